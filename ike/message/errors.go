package message

import (
	"errors"
	"fmt"
)

// Reasons a message is rejected; test for them with errors.Is.
var (
	// ErrTruncated: a length field points beyond the end of the data.
	ErrTruncated = errors.New("truncated")
	// ErrLength: a length field is too small, or lengths do not add up.
	ErrLength = errors.New("bad length")
	// ErrSyntax: a field has a value the RFC forbids.
	ErrSyntax = errors.New("invalid syntax")
	// ErrUnsupportedCritical: a payload of an unknown type has the critical bit set.
	ErrUnsupportedCritical = errors.New("unsupported critical payload")
	// ErrMajorVersion: the IKE major version is not 2.
	ErrMajorVersion = errors.New("unsupported IKE major version")
	// ErrMarshal: a payload cannot be encoded (a field out of range).
	ErrMarshal = errors.New("cannot encode")
)

// Error describes why a message was rejected: where, why, and the error
// notification RFC 7296 says to answer with.
type Error struct {
	Err      error       // one of the Err* reasons above
	Payload  PayloadType // payload being processed; PayloadNone for the IKE header
	Detail   string      // human-readable detail
	Critical PayloadType // the unknown payload type, for ErrUnsupportedCritical
}

// Error says where the message went wrong and why.
func (e *Error) Error() string {
	where := "IKE header"
	if e.Payload != PayloadNone {
		where = e.Payload.String() + " payload"
	}
	if e.Detail == "" {
		return fmt.Sprintf("ike: %s: %v", where, e.Err)
	}
	return fmt.Sprintf("ike: %s: %v: %s", where, e.Err, e.Detail)
}

// Unwrap returns the reason.
func (e *Error) Unwrap() error { return e.Err }

// Notify returns the error notification to answer the message with and its
// notification data.
func (e *Error) Notify() (NotifyType, []byte) {
	switch {
	case errors.Is(e.Err, ErrUnsupportedCritical):
		return UnsupportedCriticalPayload, []byte{byte(e.Critical)}
	case errors.Is(e.Err, ErrMajorVersion):
		return InvalidMajorVersion, nil
	}
	return InvalidSyntax, nil
}

func errorf(reason error, pt PayloadType, format string, args ...any) *Error {
	return &Error{Err: reason, Payload: pt, Detail: fmt.Sprintf(format, args...)}
}
