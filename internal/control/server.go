package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"go.uber.org/zap"
)

// API paths.
const (
	PathStatus    = "/v1/status"
	PathSAs       = "/v1/sas"
	PathInitiate  = "/v1/initiate"
	PathTerminate = "/v1/terminate"
	PathRekey     = "/v1/rekey"
	PathReload    = "/v1/reload"
)

// shutdownGrace bounds how long Serve waits for requests in flight.
const shutdownGrace = 5 * time.Second

// Server serves a Backend on a Unix socket.
type Server struct {
	path    string
	ln      *net.UnixListener
	info    fs.FileInfo // the socket file we created, to remove only ours
	backend Backend
	log     *zap.Logger
	srv     *http.Server
	// allow decides whether a peer uid may use the socket.
	allow func(uid uint32) error
	now   func() time.Time

	closeOnce sync.Once
}

// ErrDaemonRunning is returned by Listen when a daemon already answers on
// the socket path.
var ErrDaemonRunning = errors.New("another daemon is listening on the control socket")

// Listen creates the control socket at path, owner-only (mode 0600), with
// its parent directory (mode 0755) if missing, replacing a stale socket
// file. Serve then answers on it.
func Listen(path string, b Backend, log *zap.Logger) (*Server, error) {
	if path == "" {
		return nil, errors.New("control socket: empty path")
	}
	if log == nil {
		log = zap.NewNop()
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := checkExisting(path); err != nil {
		return nil, err
	}
	ln, err := bindPrivate(dir, path)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	info, err := os.Lstat(path)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	s := &Server{path: path, ln: ln, info: info, backend: b, log: log, now: time.Now}
	owner := uint32(os.Geteuid())
	s.allow = func(uid uint32) error { return authorize(uid, owner) }
	s.srv = &http.Server{
		Handler:           s.handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ConnContext:       s.connContext,
		ErrorLog:          zap.NewStdLog(log),
	}
	return s, nil
}

// bindPrivate binds a Unix socket at path with mode 0600, replacing a stale
// socket file there. Where it can, it binds in a private directory, sets
// the mode, then moves the socket into place, so that the socket is never
// reachable with a wider mode.
func bindPrivate(dir, path string) (*net.UnixListener, error) {
	tmp, err := os.MkdirTemp(dir, ".goipsec-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	tpath := filepath.Join(tmp, "s")
	if runtime.GOOS == "windows" || len(tpath) > maxSocketPath {
		// Bind in place (the SO_PEERCRED check covers the short window
		// before the chmod on Linux).
		os.Remove(path)
		tpath = path
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tpath, Net: "unix"})
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(false) // Server.Close removes the file at its final path
	if err := os.Chmod(tpath, 0o600); err != nil {
		ln.Close()
		os.Remove(tpath)
		return nil, err
	}
	if tpath != path {
		if err := os.Rename(tpath, path); err != nil {
			ln.Close()
			return nil, err
		}
	}
	return ln, nil
}

// maxSocketPath is the longest Unix socket path every supported OS takes
// (sun_path is 104 bytes on the BSDs and macOS, 108 on Linux, with a NUL).
const maxSocketPath = 103

// checkExisting refuses a path that is not a socket or on which a daemon
// answers; a stale socket is left for the rename to replace.
func checkExisting(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("control socket %s: exists and is not a socket", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("control socket %s: %w", path, ErrDaemonRunning)
	}
	return nil
}

// Path returns the socket's path.
func (s *Server) Path() string { return s.path }

// Serve answers requests until ctx is done, then shuts down (waiting a few
// seconds for requests in flight) and removes the socket file. Requests see
// ctx, so that long commands stop with the daemon.
func (s *Server) Serve(ctx context.Context) error {
	s.srv.BaseContext = func(net.Listener) context.Context { return ctx }
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		s.Close()
		return fmt.Errorf("control socket: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	err := s.srv.Shutdown(sctx)
	<-errc
	s.Close()
	if err != nil {
		return fmt.Errorf("control socket: shutdown: %w", err)
	}
	return nil
}

// Close stops serving at once and removes the socket file; Serve calls it.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		err = s.srv.Close()
		s.ln.Close()
		// Remove the file only if it is still ours (not a newer daemon's).
		if fi, lerr := os.Lstat(s.path); lerr == nil && os.SameFile(fi, s.info) {
			os.Remove(s.path)
		}
	})
	return err
}

// authorize lets the socket's owner and root use it.
func authorize(uid, owner uint32) error {
	if uid == owner || uid == 0 {
		return nil
	}
	return fmt.Errorf("permission denied: uid %d is neither the daemon's (uid %d) nor root", uid, owner)
}

type peerKey struct{}

// peer is the outcome of the credential check of one connection.
type peer struct {
	uid uint32
	err error // nil: allowed
}

func (s *Server) connContext(ctx context.Context, c net.Conn) context.Context {
	p := peer{}
	uid, err := peerUID(c)
	switch {
	case errors.Is(err, errors.ErrUnsupported):
		// No peer credentials on this OS: the socket's mode protects it.
	case err != nil:
		p.err = fmt.Errorf("permission denied: cannot check the peer's credentials: %w", err)
	default:
		p.uid = uid
		p.err = s.allow(uid)
	}
	return context.WithValue(ctx, peerKey{}, p)
}

// errorBody is the JSON body of every error answer.
type errorBody struct {
	Error string `json:"error"`
}

// okBody is the JSON body of a successful command.
type okBody struct {
	OK bool `json:"ok"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, errorBody{Error: msg})
}

// statusOf maps a backend error to its HTTP status.
func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrNotImplemented):
		return http.StatusNotImplemented
	case errors.Is(err, ErrConflict):
		return http.StatusConflict
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func (s *Server) handler() http.Handler {
	b := s.backend
	routes := map[string]struct {
		method string
		h      http.HandlerFunc
	}{
		PathStatus: {http.MethodGet, func(w http.ResponseWriter, _ *http.Request) {
			st := b.Status()
			if st.UptimeSeconds == 0 && !st.Started.IsZero() {
				st.UptimeSeconds = seconds(s.now().Sub(st.Started))
			}
			writeJSON(w, http.StatusOK, st)
		}},
		PathSAs: {http.MethodGet, func(w http.ResponseWriter, _ *http.Request) {
			l := SAList{SAs: b.ListSAs(), IKESAs: []IKESA{}}
			if ik, ok := b.(IKELister); ok {
				if list := ik.ListIKESAs(); list != nil {
					l.IKESAs = list
				}
			}
			if l.SAs == nil {
				l.SAs = []SA{}
			}
			writeJSON(w, http.StatusOK, l)
		}},
		PathInitiate:  {http.MethodPost, s.named("initiate", b.Initiate)},
		PathTerminate: {http.MethodPost, s.named("terminate", b.Terminate)},
		PathRekey:     {http.MethodPost, s.named("rekey", b.Rekey)},
		PathReload: {http.MethodPost, func(w http.ResponseWriter, r *http.Request) {
			s.run(w, r, "reload", "", b.Reload)
		}},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := r.Context().Value(peerKey{}).(peer)
		if p.err != nil {
			s.log.Warn("control: connection refused", zap.Uint32("uid", p.uid), zap.Error(p.err))
			writeError(w, http.StatusForbidden, p.err.Error())
			return
		}
		rt, ok := routes[r.URL.Path]
		if !ok {
			writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint: %s", r.URL.Path))
			return
		}
		if r.Method != rt.method {
			w.Header().Set("Allow", rt.method)
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s wants %s, got %s", r.URL.Path, rt.method, r.Method))
			return
		}
		rt.h(w, r)
	})
}

// named handles a command on the connection named by ?name=.
func (s *Server) named(what string, f func(context.Context, string) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("name")
		if name == "" {
			writeError(w, http.StatusBadRequest, what+": missing ?name=")
			return
		}
		s.run(w, r, what, name, func(ctx context.Context) error { return f(ctx, name) })
	}
}

func (s *Server) run(w http.ResponseWriter, r *http.Request, what, name string, f func(context.Context) error) {
	log := s.log
	if name != "" {
		log = log.With(zap.String("name", name))
	}
	log.Info("control: " + what)
	if err := f(r.Context()); err != nil {
		log.Warn("control: "+what+" failed", zap.Error(err))
		writeError(w, statusOf(err), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, okBody{OK: true})
}
