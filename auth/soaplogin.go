package auth

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strconv"
	"strings"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/internal/xmltext"
)

// The SOAP action of the SoPrincipal login (its namespaces are internal/xmltext's). The
// login is rare and its reply small, so it is read into a small element tree rather than
// streamed as soap's ErpSync replies are.
const (
	actionAuthenticateUsernamePassword = "http://www.superoffice.net/ws/crm/NetServer/Services88/SoPrincipal/AuthenticateUsernamePassword"
)

// appendLoginEnvelope appends a SoPrincipal.AuthenticateUsernamePassword request envelope
// (SOAP 1.1; the ApplicationToken header only when appToken is set).
func appendLoginEnvelope(b []byte, appToken, user, password string) []byte {
	b = append(b, `<?xml version="1.0" encoding="utf-8"?>`+"\n"+`<s:Envelope xmlns:s="`+xmltext.SOAP11+`"><s:Header>`...)
	if appToken != "" {
		b = append(b, `<ApplicationToken xmlns="`+xmltext.NetServer+`">`...)
		b = xmltext.AppendEscaped(b, appToken)
		b = append(b, `</ApplicationToken>`...)
	}
	b = append(b, `</s:Header><s:Body><AuthenticateUsernamePassword xmlns="`+xmltext.NetServer+`"><UserName>`...)
	b = xmltext.AppendEscaped(b, user)
	b = append(b, `</UserName><Password>`...)
	b = xmltext.AppendEscaped(b, password)
	return append(b, `</Password></AuthenticateUsernamePassword></s:Body></s:Envelope>`...)
}

// node is one element of a parsed reply.
type node struct {
	name xml.Name
	nil  bool // xsi:nil="true"
	text string
	kids []*node
}

// maxLoginDepth bounds the element tree of a login reply.
const maxLoginDepth = 32

var errNotEnvelope = errors.New("not a SOAP envelope")

// readTree reads an XML document into a tree; nil for a document that has no root
// element or starts with text or a directive (an HTML page).
func readTree(data []byte) (*node, error) {
	d := xmltext.NewDecoder(data)
	var stack []*node
	var root *node
	for {
		t, err := d.Token()
		if err == io.EOF {
			if root == nil {
				return nil, errNotEnvelope
			}
			if len(stack) > 0 {
				return nil, io.ErrUnexpectedEOF
			}
			return root, nil
		}
		if err != nil {
			return nil, err
		}
		switch t := t.(type) {
		case xml.StartElement:
			n := &node{name: t.Name, nil: xmltext.IsNil(t)}
			switch {
			case len(stack) > 0:
				if len(stack) >= maxLoginDepth {
					return nil, errors.New("elements nested too deep")
				}
				top := stack[len(stack)-1]
				top.kids = append(top.kids, n)
			case root != nil:
				return nil, errors.New("more than one root element")
			default:
				root = n
			}
			stack = append(stack, n)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 0 {
				stack[len(stack)-1].text += string(t)
			} else if root == nil && len(bytes.TrimSpace(t)) != 0 {
				return nil, errNotEnvelope
			}
		case xml.Directive:
			if root == nil {
				return nil, errNotEnvelope
			}
		}
	}
}

func (n *node) netServer(local string) bool {
	return strings.HasPrefix(n.name.Space, xmltext.NetServerPrefix) && n.name.Local == local && !n.nil
}

func (n *node) trimmed() string { return strings.TrimSpace(n.text) }

func (n *node) boolean() (bool, error) {
	switch s := n.trimmed(); s {
	case "true", "1":
		return true, nil
	case "false", "0":
		return false, nil
	default:
		return false, errors.New("not an xs:boolean: " + strconv.Quote(erpsync.Truncate(s, 40)))
	}
}

// loginReply is what a SoPrincipal reply says.
type loginReply struct {
	found     bool // AuthenticateResponse was present
	succeeded bool
	ticket    string
}

// parseLoginReply reads an AuthenticateUsernamePassword reply. A SOAP fault is a
// *erpsync.FaultError, a NetServer exception (or Succeeded=false) an *erpsync.ExceptionError
// or *erpsync.ProtocolError, anything unreadable an *erpsync.ProtocolError.
func parseLoginReply(data []byte, status int) (loginReply, error) {
	var lr loginReply
	root, err := readTree(data)
	if err != nil {
		reason := "malformed XML"
		if errors.Is(err, errNotEnvelope) {
			reason = "reply is not a SOAP envelope"
			err = nil
		}
		return lr, &erpsync.ProtocolError{HTTPStatus: status, Reason: reason, Err: err}
	}
	soapNS := root.name.Space
	if root.name.Local != "Envelope" || (soapNS != xmltext.SOAP11 && soapNS != xmltext.SOAP12) {
		return lr, &erpsync.ProtocolError{HTTPStatus: status, Reason: "reply is not a SOAP envelope"}
	}
	var exception *erpsync.ExceptionError
	var fault *erpsync.FaultError
	succeeded, hasSucceeded := false, false
	header := func(h *node) error {
		switch {
		case h.netServer("ExceptionInfo") && exception == nil:
			exception = exceptionOf(h, 0)
		case h.netServer("Succeeded"):
			v, err := h.boolean()
			if err != nil {
				return err
			}
			succeeded, hasSucceeded = v, true
		}
		return nil
	}
	for _, c := range root.kids {
		switch {
		case c.name.Space == soapNS && c.name.Local == "Header":
			for _, h := range c.kids {
				if err := header(h); err != nil {
					return lr, &erpsync.ProtocolError{HTTPStatus: status, Reason: "invalid value", Err: err}
				}
			}
		case c.name.Space == soapNS && c.name.Local == "Body":
			for _, b := range c.kids {
				switch {
				case b.name.Space == soapNS && b.name.Local == "Fault" && fault == nil:
					fault = faultOf(b)
				case b.netServer("AuthenticateResponse"):
					if err := lr.read(b); err != nil {
						return lr, &erpsync.ProtocolError{HTTPStatus: status, Reason: "invalid value", Err: err}
					}
				}
			}
		default:
			if err := header(c); err != nil {
				return lr, &erpsync.ProtocolError{HTTPStatus: status, Reason: "invalid value", Err: err}
			}
		}
	}
	if fault != nil {
		fault.HTTPStatus = status
		return lr, fault
	}
	if ex := exception; ex != nil {
		empty := ex.Type == "" && ex.Message == "" && ex.FriendlyText == "" && ex.Inner == nil
		if !(empty && (!hasSucceeded || succeeded)) {
			return lr, ex
		}
	}
	if hasSucceeded && !succeeded {
		return lr, &erpsync.ProtocolError{HTTPStatus: status, Reason: "Succeeded=false without ExceptionInfo"}
	}
	return lr, nil
}

// read fills lr from an AuthenticateResponse element: whether the login succeeded, and
// the ticket.
func (lr *loginReply) read(resp *node) error {
	lr.found = true
	for _, r := range resp.kids {
		switch {
		case r.netServer("AuthenticationSucceeded"):
			v, err := r.boolean()
			if err != nil {
				return err
			}
			lr.succeeded = v
		case r.netServer("Credentials"):
			for _, t := range r.kids {
				if t.netServer("Ticket") {
					lr.ticket = t.trimmed()
				}
			}
		}
	}
	return nil
}

const maxInnerExceptions = 8

func exceptionOf(n *node, depth int) *erpsync.ExceptionError {
	ex := &erpsync.ExceptionError{}
	for _, c := range n.kids {
		switch {
		case c.netServer("ExceptionType"):
			ex.Type = c.text
		case c.netServer("Message"):
			ex.Message = c.text
		case c.netServer("FriendlyText"):
			ex.FriendlyText = c.text
		case c.netServer("Source"):
			ex.Source = c.text
		case c.netServer("InnerException") && depth < maxInnerExceptions && ex.Inner == nil:
			ex.Inner = exceptionOf(c, depth+1)
		}
	}
	return ex
}

// faultOf reads a SOAP 1.1 (faultcode, faultstring) or 1.2 (Code/Value, Subcode, Reason/Text) fault.
func faultOf(n *node) *erpsync.FaultError {
	f := &erpsync.FaultError{}
	for _, c := range n.kids {
		switch c.name.Local {
		case "faultcode":
			f.Code = c.trimmed()
		case "faultstring":
			f.Reason = c.text
		case "Code":
			for depth, code := 0, c; code != nil && depth < 8; depth++ {
				var next *node
				for _, v := range code.kids {
					switch v.name.Local {
					case "Value":
						if depth == 0 {
							f.Code = v.trimmed()
						} else {
							f.Subcode = v.trimmed()
						}
					case "Subcode":
						next = v
					}
				}
				code = next
			}
		case "Reason":
			for _, t := range c.kids {
				if t.name.Local == "Text" && f.Reason == "" {
					f.Reason = t.text
				}
			}
		}
	}
	f.Sender = erpsync.SenderFault(f.Subcode, f.Code)
	return f
}
