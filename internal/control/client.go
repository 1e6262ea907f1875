package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
)

// maxResponse bounds the size of an answer the client reads.
const maxResponse = 64 << 20

// Client talks to the daemon's control socket.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client for the control socket at path.
func NewClient(path string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, "unix", path)
			if err != nil {
				return nil, &DialError{Socket: path, Err: err}
			}
			return c, nil
		},
		DisableKeepAlives: true,
	}
	return &Client{socket: path, http: &http.Client{Transport: tr}}
}

// Socket returns the path of the socket the client uses.
func (c *Client) Socket() string { return c.socket }

// DialError reports that the daemon's socket could not be reached.
type DialError struct {
	Socket string
	Err    error
}

func (e *DialError) Error() string {
	err := e.Err
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		err = op.Err // drop "dial unix PATH:", the message names the path
	}
	return fmt.Sprintf("cannot reach the daemon at %s: %v", e.Socket, err)
}

func (e *DialError) Unwrap() error { return e.Err }

// Error is an error answer of the daemon.
type Error struct {
	StatusCode int    // the HTTP status
	Message    string // the daemon's message
}

func (e *Error) Error() string { return e.Message }

// Is lets errors.Is match an answer against ErrNotFound,
// ErrNotImplemented and ErrConflict.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound
	case ErrNotImplemented:
		return e.StatusCode == http.StatusNotImplemented
	case ErrConflict:
		return e.StatusCode == http.StatusConflict
	}
	return false
}

// Status asks for the daemon's status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var st Status
	if err := c.do(ctx, http.MethodGet, PathStatus, nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// ListSAs asks for the installed SAs.
func (c *Client) ListSAs(ctx context.Context) ([]SA, error) {
	l, err := c.ListAll(ctx)
	if err != nil {
		return nil, err
	}
	return l.SAs, nil
}

// ListAll asks for the IKE SAs and the installed IPsec SAs.
func (c *Client) ListAll(ctx context.Context) (*SAList, error) {
	var l SAList
	if err := c.do(ctx, http.MethodGet, PathSAs, nil, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// Initiate asks the daemon to bring up the named connection.
func (c *Client) Initiate(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodPost, PathInitiate, url.Values{"name": {name}}, nil)
}

// Terminate asks the daemon to take down the named connection.
func (c *Client) Terminate(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodPost, PathTerminate, url.Values{"name": {name}}, nil)
}

// Rekey asks the daemon to rekey the named connection.
func (c *Client) Rekey(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodPost, PathRekey, url.Values{"name": {name}}, nil)
}

// Reload asks the daemon to reload its configuration.
func (c *Client) Reload(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, PathReload, nil, nil)
}

func (c *Client) do(ctx context.Context, method, path string, q url.Values, out any) error {
	u := url.URL{Scheme: "http", Host: "goipsec", Path: path, RawQuery: q.Encode()}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var de *DialError
		if errors.As(err, &de) {
			return de
		}
		return fmt.Errorf("talking to the daemon at %s: %w", c.socket, unwrapURL(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return fmt.Errorf("reading the daemon's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var eb errorBody
		if json.Unmarshal(body, &eb) != nil || eb.Error == "" {
			eb.Error = fmt.Sprintf("the daemon answered %s", resp.Status)
		}
		return &Error{StatusCode: resp.StatusCode, Message: eb.Error}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("decoding the daemon's answer to %s: %w", path, err)
	}
	return nil
}

// unwrapURL strips the *url.Error wrapper, whose message repeats the
// made-up URL.
func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
