package netserversim

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/erpresync/erpresync/internal/xmltext"
)

// Namespaces (protocol doc §3.2): short names here for internal/xmltext's, which the
// client's packages use too.
const (
	nsSoap11 = xmltext.SOAP11
	nsSoap12 = xmltext.SOAP12
	ns88     = xmltext.NetServer
	nsArrays = xmltext.Arrays
	nsXSI    = xmltext.XSI
)

// SOAP actions served (§1.3, §7.1).
const (
	actionPrefixErpSync   = ns88 + "/ErpSync/"
	actionPrefixPrincipal = ns88 + "/SoPrincipal/"
	// ActionForceResyncExternal is the SOAPAction of ErpSync.ForceResyncExternal.
	ActionForceResyncExternal = actionPrefixErpSync + "ForceResyncExternal"
	// ActionAuthenticateUsernamePassword is the SOAPAction of SoPrincipal.AuthenticateUsernamePassword.
	ActionAuthenticateUsernamePassword = actionPrefixPrincipal + "AuthenticateUsernamePassword"
)

// elem is a parsed XML element: a tiny DOM, enough for envelopes of bounded size.
type elem struct {
	name xml.Name
	attr []xml.Attr
	kids []*elem
	text strings.Builder // character data directly inside this element
}

const maxDepth = 64

var errNotWellFormed = errors.New("request is not well-formed XML")

// parseXML reads one document. Non-UTF-8 declared encodings, DTDs and trailing elements are
// errors (WCF's reader quotas and DTD prohibition behave alike [I]). A leading UTF-8 byte
// order mark is allowed, as XML 1.0 §4.3.3 and WCF's reader allow it.
func parseXML(data []byte) (*elem, error) {
	d := xml.NewDecoder(bytes.NewReader(bytes.TrimPrefix(data, []byte("\xEF\xBB\xBF"))))
	d.Strict = true
	var stack []*elem
	var root *elem
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errNotWellFormed, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if len(stack) >= maxDepth {
				return nil, fmt.Errorf("%w: nesting deeper than %d", errNotWellFormed, maxDepth)
			}
			e := &elem{name: t.Name, attr: t.Copy().Attr}
			if len(stack) == 0 {
				if root != nil {
					return nil, fmt.Errorf("%w: more than one root element", errNotWellFormed)
				}
				root = e
			} else {
				p := stack[len(stack)-1]
				p.kids = append(p.kids, e)
			}
			stack = append(stack, e)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 0 {
				stack[len(stack)-1].text.Write(t)
			} else if len(bytes.TrimSpace(t)) > 0 {
				return nil, fmt.Errorf("%w: text outside the root element", errNotWellFormed)
			}
		case xml.Directive:
			return nil, fmt.Errorf("%w: DTDs are not allowed", errNotWellFormed)
		}
	}
	if root == nil {
		return nil, fmt.Errorf("%w: no root element", errNotWellFormed)
	}
	return root, nil
}

func (e *elem) is(space, local string) bool { return e.name.Space == space && e.name.Local == local }

func (e *elem) attrValue(space, local string) (string, bool) {
	for _, a := range e.attr {
		if a.Name.Space == space && a.Name.Local == local {
			return a.Value, true
		}
	}
	return "", false
}

// isNil reports xsi:nil="true".
func (e *elem) isNil() bool {
	v, ok := e.attrValue(nsXSI, "nil")
	v = strings.TrimSpace(v)
	return ok && (v == "true" || v == "1")
}

// envelope is a SOAP 1.1 envelope split into its header entries and body entries.
type envelope struct {
	headers []*elem // children of s:Header, in order
	body    []*elem // children of s:Body
}

// envelopeError is how a request failed at the envelope level.
type envelopeError int

const (
	envOK envelopeError = iota
	envBadRequest
	envVersionMismatch
)

// splitEnvelope checks the SOAP 1.1 envelope. Only an s:Header that precedes s:Body supplies
// headers; other elements directly under the Envelope (the doc generator's artefact of
// headers outside <Header>, §1.2) are not headers and are ignored.
func splitEnvelope(root *elem) (*envelope, envelopeError) {
	if root.name.Local != "Envelope" {
		return nil, envBadRequest
	}
	switch root.name.Space {
	case nsSoap11:
	case nsSoap12:
		return nil, envVersionMismatch
	default:
		return nil, envBadRequest
	}
	env := &envelope{}
	var sawHeader, sawBody bool
	for _, k := range root.kids {
		switch {
		case k.is(nsSoap11, "Header") && !sawHeader && !sawBody:
			sawHeader = true
			env.headers = k.kids
		case k.is(nsSoap11, "Body") && !sawBody:
			sawBody = true
			env.body = k.kids
		case k.is(nsSoap11, "Header"), k.is(nsSoap11, "Body"):
			return nil, envBadRequest // a second Header or Body, or Header after Body
		}
	}
	if !sawBody {
		return nil, envBadRequest
	}
	return env, envOK
}

// requestHeaders are the Services88 headers the simulator reads (§3.3).
type requestHeaders struct {
	appToken    string
	hasAppToken bool
	ticket      string
}

// headerProblem is a header-level SOAP fault.
type headerProblem struct {
	code, text string
}

// readHeaders picks ApplicationToken, Credentials/Ticket and TimeZone by local name and the
// Services88 namespace. Headers WCF would not understand but marked s:mustUnderstand fail,
// as do repeated headers.
func readHeaders(hs []*elem, understood map[string]bool) (requestHeaders, *headerProblem) {
	var rh requestHeaders
	seen := map[string]bool{}
	for _, h := range hs {
		if h.name.Space == ns88 && understood[h.name.Local] {
			if seen[h.name.Local] {
				return rh, &headerProblem{code: "s:Client", text: fmt.Sprintf(
					"Multiple headers with name '%s' and namespace '%s' found.", h.name.Local, ns88)}
			}
			seen[h.name.Local] = true
			switch h.name.Local {
			case "ApplicationToken":
				rh.hasAppToken = !h.isNil()
				if rh.hasAppToken {
					rh.appToken = strings.TrimSpace(h.text.String())
				}
			case "Credentials":
				if h.isNil() {
					continue
				}
				for _, c := range h.kids {
					if c.is(ns88, "Ticket") && !c.isNil() {
						rh.ticket = strings.TrimSpace(c.text.String())
					}
				}
			}
			continue
		}
		if v, ok := h.attrValue(nsSoap11, "mustUnderstand"); ok {
			if v = strings.TrimSpace(v); v == "1" || v == "true" {
				return rh, &headerProblem{code: "s:MustUnderstand", text: fmt.Sprintf(
					"The header '%s' from the namespace '%s' was not understood by the recipient of this message, "+
						"causing the message to not be processed.  This error typically indicates that the sender of "+
						"this message has enabled a communication protocol that the receiver cannot process.  Please "+
						"ensure that the configuration of the client's binding is consistent with the service's binding. ",
					h.name.Local, h.name.Space)}
			}
		}
	}
	return rh, nil
}

// deserializeError becomes a WCF DeserializationFailed fault; its text follows
// DataContractSerializer's messages [I].
type deserializeError struct{ msg string }

func (e *deserializeError) Error() string { return e.msg }

func wrapperMismatch(op string, got *elem) *deserializeError {
	if got == nil {
		return &deserializeError{fmt.Sprintf("OperationFormatter encountered an invalid Message body. "+
			"Expected to find node type 'Element' with name '%s' and namespace '%s'. Found node type 'EndElement' "+
			"with name 'Body' and namespace '%s'", op, ns88, nsSoap11)}
	}
	return &deserializeError{fmt.Sprintf("OperationFormatter encountered an invalid Message body. "+
		"Expected to find node type 'Element' with name '%s' and namespace '%s'. Found node type 'Element' "+
		"with name '%s' and namespace '%s'", op, ns88, got.name.Local, got.name.Space)}
}

func unexpectedElement(op string, got *elem) *deserializeError {
	return &deserializeError{fmt.Sprintf("The formatter threw an exception while trying to deserialize the message: "+
		"Error in deserializing body of request message for operation '%s'. End element '%s' from namespace '%s' "+
		"expected. Found element '%s' from namespace '%s'.", op, op, ns88, got.name.Local, got.name.Space)}
}

func badParameter(param, inner string) *deserializeError {
	return &deserializeError{fmt.Sprintf("The formatter threw an exception while trying to deserialize the message: "+
		"There was an error while trying to deserialize parameter %s:%s. The InnerException message was '%s'.  "+
		"Please see InnerException for more details.", ns88, param, inner)}
}

// wrapped returns the single operation element of the body, or a deserialization error.
func wrapped(body []*elem, op string) (*elem, *deserializeError) {
	if len(body) == 0 {
		return nil, wrapperMismatch(op, nil)
	}
	if !body[0].is(ns88, op) {
		return nil, wrapperMismatch(op, body[0])
	}
	if len(body) > 1 {
		return nil, &deserializeError{fmt.Sprintf("OperationFormatter encountered an invalid Message body. "+
			"Expected to find node type 'EndElement' with name 'Body' and namespace '%s'. Found node type 'Element' "+
			"with name '%s' and namespace '%s'", nsSoap11, body[1].name.Local, body[1].name.Space)}
	}
	return body[0], nil
}

// orderedParams walks the wrapper's children, which must be a subsequence of params in WSDL
// order (each at most once, all in Services88). DataContractSerializer reads parameters
// strictly in order, so an out-of-order or unknown element fails the whole message.
func orderedParams(w *elem, op string, params []string, visit func(i int, e *elem) *deserializeError) *deserializeError {
	next := 0
	for _, k := range w.kids {
		i := -1
		if k.name.Space == ns88 {
			for j := next; j < len(params); j++ {
				if params[j] == k.name.Local {
					i = j
					break
				}
			}
		}
		if i < 0 {
			return unexpectedElement(op, k)
		}
		if err := visit(i, k); err != nil {
			return err
		}
		next = i + 1
	}
	return nil
}

// resyncRequest is a parsed ForceResyncExternal body (§3.4). Omitted elements take WCF's
// defaults: 0, Unknown, nil.
type resyncRequest struct {
	connID int32
	actor  ActorType
	keys   []string // as sent, repeats included
}

func parseForceResync(body []*elem) (*resyncRequest, *deserializeError) {
	const op = "ForceResyncExternal"
	w, derr := wrapped(body, op)
	if derr != nil {
		return nil, derr
	}
	req := &resyncRequest{}
	derr = orderedParams(w, op, []string{"ErpConnectionId", "ErpActorType", "ExternalKeys"}, func(i int, e *elem) *deserializeError {
		switch i {
		case 0:
			s := strings.TrimSpace(e.text.String())
			if e.isNil() || len(e.kids) > 0 {
				return badParameter("ErpConnectionId", "There was an error deserializing the object of type System.Int32. "+
					"The value '' cannot be parsed as the type 'Int32'.")
			}
			n, err := strconv.ParseInt(s, 10, 32)
			if err != nil {
				return badParameter("ErpConnectionId", fmt.Sprintf("There was an error deserializing the object of type "+
					"System.Int32. The value '%s' cannot be parsed as the type 'Int32'.", s))
			}
			req.connID = int32(n)
		case 1:
			s := strings.TrimSpace(e.text.String())
			a, err := ParseActorType(s)
			if err != nil || e.isNil() || len(e.kids) > 0 {
				return badParameter("ErpActorType", fmt.Sprintf("Invalid enum value '%s' cannot be deserialized into type "+
					"'SuperOffice.CRM.Services.ErpActorType'. Ensure that the necessary enum values are present and are "+
					"marked with EnumMemberAttribute attribute if the type has DataContractAttribute attribute.", s))
			}
			req.actor = a
		case 2:
			if e.isNil() {
				return nil
			}
			for _, it := range e.kids {
				if !it.is(nsArrays, "string") {
					return badParameter("ExternalKeys", fmt.Sprintf("Expecting element 'string' from namespace '%s'.. "+
						"Encountered 'Element'  with name '%s', namespace '%s'. ", nsArrays, it.name.Local, it.name.Space))
				}
				if len(it.kids) > 0 {
					return badParameter("ExternalKeys", fmt.Sprintf("There was an error deserializing the object of "+
						"type System.String. End element 'string' from namespace '%s' expected. Found element '%s' "+
						"from namespace '%s'.", nsArrays, it.kids[0].name.Local, it.kids[0].name.Space))
				}
				// xs:string keeps whitespace; a nil item deserialises as null, which NetServer
				// could not match to any key; the simulator treats it as "".
				req.keys = append(req.keys, it.text.String())
			}
		}
		return nil
	})
	if derr != nil {
		return nil, derr
	}
	return req, nil
}

// loginRequest is a parsed AuthenticateUsernamePassword body (§7.1).
type loginRequest struct {
	user, password string
}

func parseLogin(body []*elem) (*loginRequest, *deserializeError) {
	const op = "AuthenticateUsernamePassword"
	w, derr := wrapped(body, op)
	if derr != nil {
		return nil, derr
	}
	req := &loginRequest{}
	derr = orderedParams(w, op, []string{"UserName", "Password"}, func(i int, e *elem) *deserializeError {
		if len(e.kids) > 0 {
			return unexpectedElement(op, e.kids[0])
		}
		if i == 0 {
			req.user = e.text.String()
		} else {
			req.password = e.text.String()
		}
		return nil
	})
	if derr != nil {
		return nil, derr
	}
	return req, nil
}
