package soap

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strconv"
	"strings"

	"github.com/erpresync/erpresync/erpsync"
)

// envelope is what every NetServer reply carries besides its body.
type envelope struct {
	soap12       bool
	succeeded    bool                    // the Succeeded header's value
	hasSucceeded bool                    // whether the Succeeded header was present
	exception    *erpsync.ExceptionError // ExceptionInfo header, nil when absent or nil
	fault        *erpsync.FaultError     // SOAP Fault in the body
}

// errNotEnvelope marks a reply that is XML (or not) but not a SOAP envelope; callers turn
// it into an erpsync.HTTPError or an erpsync.ProtocolError depending on the status.
var errNotEnvelope = errors.New("not a SOAP envelope")

// bodyFunc parses one child element of <Body> other than a Fault. It must consume the
// element through its end tag (p.skip does).
type bodyFunc func(p *parser, se xml.StartElement) error

// parseEnvelope walks a SOAP 1.1 or 1.2 envelope. Elements are matched by namespace and
// local name, never by prefix. Header elements are accepted inside <Header> or directly
// under <Envelope> (as SuperOffice's generated examples print them). Unknown elements are
// skipped. The returned error is errNotEnvelope or a parse error, both unwrapped.
func parseEnvelope(data []byte, body bodyFunc) (*envelope, error) {
	p := newParser(data)
	root, err := p.firstElement()
	if err != nil {
		return nil, err
	}
	if root.Name.Local != "Envelope" || (root.Name.Space != nsSOAP11 && root.Name.Space != nsSOAP12) {
		return nil, errNotEnvelope
	}
	env := &envelope{soap12: root.Name.Space == nsSOAP12}
	soapNS := root.Name.Space
	err = p.children(func(se xml.StartElement) error {
		switch {
		case se.Name.Space == soapNS && se.Name.Local == "Header":
			return p.children(func(h xml.StartElement) error { return p.header(env, h) })
		case se.Name.Space == soapNS && se.Name.Local == "Body":
			return p.children(func(b xml.StartElement) error {
				if b.Name.Space == soapNS && b.Name.Local == "Fault" {
					f, err := p.fault(env.soap12)
					if err == nil && env.fault == nil {
						env.fault = f
					}
					return err
				}
				if body == nil {
					return p.skip()
				}
				return body(p, b)
			})
		default:
			return p.header(env, se)
		}
	})
	if err != nil {
		return nil, err
	}
	return env, nil
}

// header handles one SOAP header element.
func (p *parser) header(env *envelope, se xml.StartElement) error {
	if !isNetServer(se.Name) || isNil(se) {
		return p.skip()
	}
	switch se.Name.Local {
	case "ExceptionInfo":
		ex, err := p.exception(0)
		if err != nil {
			return err
		}
		if env.exception == nil {
			env.exception = ex
		}
		return nil
	case "Succeeded":
		v, err := p.boolean()
		if err != nil {
			return err
		}
		env.succeeded, env.hasSucceeded = v, true
		return nil
	}
	return p.skip()
}

// exception parses the children of a SoExceptionInfo element.
func (p *parser) exception(depth int) (*erpsync.ExceptionError, error) {
	ex := &erpsync.ExceptionError{}
	err := p.children(func(se xml.StartElement) error {
		if !isNetServer(se.Name) || isNil(se) {
			return p.skip()
		}
		var err error
		switch se.Name.Local {
		case "ExceptionType":
			ex.Type, err = p.text()
		case "Message":
			ex.Message, err = p.text()
		case "FriendlyText":
			ex.FriendlyText, err = p.text()
		case "Source":
			ex.Source, err = p.text()
		case "InnerException":
			if depth >= maxInnerExceptions || ex.Inner != nil {
				return p.skip()
			}
			ex.Inner, err = p.exception(depth + 1)
		default: // StackTrace, Parameters
			err = p.skip()
		}
		return err
	})
	return ex, err
}

// fault parses the children of a SOAP 1.1 or 1.2 Fault element. SOAP 1.1 children are
// unqualified, 1.2 children are in the envelope namespace; both are matched by local name.
func (p *parser) fault(soap12 bool) (*erpsync.FaultError, error) {
	f := &erpsync.FaultError{}
	err := p.children(func(se xml.StartElement) error {
		var err error
		switch se.Name.Local {
		case "faultcode":
			f.Code, err = p.trimmedText()
		case "faultstring":
			f.Reason, err = p.text()
		case "Code":
			err = p.faultCode12(f, 0)
		case "Reason":
			err = p.children(func(t xml.StartElement) error {
				if t.Name.Local != "Text" || f.Reason != "" {
					return p.skip()
				}
				var err error
				f.Reason, err = p.text()
				return err
			})
		default:
			err = p.skip()
		}
		return err
	})
	f.Sender = erpsync.SenderFault(f.Subcode, f.Code)
	return f, err
}

// faultCode12 reads a SOAP 1.2 Code (depth 0) or Subcode element.
func (p *parser) faultCode12(f *erpsync.FaultError, depth int) error {
	return p.children(func(se xml.StartElement) error {
		switch se.Name.Local {
		case "Value":
			v, err := p.trimmedText()
			if depth == 0 {
				f.Code = v
			} else {
				f.Subcode = v
			}
			return err
		case "Subcode":
			if depth >= 8 {
				return p.skip()
			}
			return p.faultCode12(f, depth+1)
		}
		return p.skip()
	})
}

// forceResyncBody returns a bodyFunc that parses ForceResyncExternalResponse into *out.
// *found reports whether the response element was present (even if erpsync.Result was nil).
func forceResyncBody(out **erpsync.Result, found *bool) bodyFunc {
	return func(p *parser, se xml.StartElement) error {
		if !isNetServer(se.Name) || se.Name.Local != "ForceResyncExternalResponse" {
			return p.skip()
		}
		*found = true
		return p.children(func(r xml.StartElement) error {
			if !isNetServer(r.Name) || (r.Name.Local != "Response" && r.Name.Local != "ForceResyncExternalResult") || isNil(r) || *out != nil {
				return p.skip()
			}
			resp, err := p.pluginResponse()
			*out = resp
			return err
		})
	}
}

// pluginResponse parses the children of a PluginResponse, in any order. TableRight and
// FieldProperties are ignored. Without a Status, Status is derived from IsOk.
func (p *parser) pluginResponse() (*erpsync.Result, error) {
	r := &erpsync.Result{}
	hasStatus := false
	err := p.children(func(se xml.StartElement) error {
		if !isNetServer(se.Name) || isNil(se) {
			return p.skip()
		}
		var err error
		switch se.Name.Local {
		case "IsOk":
			r.IsOk, err = p.boolean()
		case "UserExplanation":
			r.UserExplanation, err = p.text()
		case "TechExplanation":
			r.TechExplanation, err = p.text()
		case "ErrorCode":
			r.ErrorCode, err = p.text()
		case "Changes":
			err = p.changes(&r.Changes)
		case "Status":
			var name string
			name, err = p.trimmedText()
			if name != "" {
				hasStatus = true
				r.StatusName = name
				r.Status, _ = erpsync.ParseQuoteStatus(name)
			}
		default:
			err = p.skip()
		}
		return err
	})
	if !hasStatus {
		r.StatusName = ""
		if r.IsOk {
			r.Status = erpsync.StatusOk
		} else {
			r.Status = erpsync.StatusError
		}
	}
	return r, err
}

// changes parses ChangedData.
func (p *parser) changes(c *erpsync.Changes) error {
	return p.children(func(se xml.StartElement) error {
		if !isNetServer(se.Name) || isNil(se) {
			return p.skip()
		}
		var list *[]erpsync.ChangedItem
		switch se.Name.Local {
		case "AddedRecords":
			list = &c.Added
		case "UpdatedRecords":
			list = &c.Updated
		case "DeletedRecords":
			list = &c.Deleted
		default:
			return p.skip()
		}
		if *list == nil {
			*list = []erpsync.ChangedItem{}
		}
		return p.children(func(item xml.StartElement) error {
			if !isNetServer(item.Name) || item.Name.Local != "ChangedDataItem" || isNil(item) {
				return p.skip()
			}
			var it erpsync.ChangedItem
			err := p.children(func(f xml.StartElement) error {
				if !isNetServer(f.Name) || isNil(f) {
					return p.skip()
				}
				var err error
				switch f.Name.Local {
				case "Tablename":
					it.Table, err = p.text()
				case "RecordId":
					it.RecordID, err = p.int32()
				default:
					err = p.skip()
				}
				return err
			})
			*list = append(*list, it)
			return err
		})
	})
}

// ParseResponse parses a ForceResyncExternal reply body without HTTP context. It returns
// the erpsync.Result, or an *erpsync.ExceptionError (TicketRejected set by defaultTicketErrorExpr), a
// *erpsync.FaultError or a *erpsync.ProtocolError, each wrapped. It never panics, whatever the input, and
// is safe for concurrent use.
func ParseResponse(body []byte) (*erpsync.Result, error) {
	resp, err := parseForceResync(body, 0, defaultTicketErrorPattern.MatchString)
	if err != nil {
		return nil, wrapOp("parse ForceResyncExternal response", err)
	}
	return resp, nil
}

// parseForceResync parses a reply and classifies it; status is the HTTP status (0 when
// unknown). A reply that is not an envelope gives errNotEnvelope-wrapping *erpsync.ProtocolError.
//
// The reply goes to decodeForceResync; what it declines (a malformed reply, or one of the
// forms it leaves to encoding/xml, such as a DOCTYPE) goes to the general parser, which
// accepts or words the error as it always has.
func parseForceResync(body []byte, status int, ticketMatch func(string) bool) (*erpsync.Result, error) {
	fast, resp, found, err := decodeForceResync(body)
	if errors.Is(err, errDecline) {
		return parseForceResyncXML(body, status, ticketMatch)
	}
	return finishForceResync(&fast, resp, found, err, status, ticketMatch)
}

// parseForceResyncXML decodes a reply with the general parser alone (encoding/xml's token
// stream): the decoder for what decodeForceResync declines, and the reference the
// differential tests and FuzzDecoderDifferential hold decodeForceResync to.
func parseForceResyncXML(body []byte, status int, ticketMatch func(string) bool) (*erpsync.Result, error) {
	var resp *erpsync.Result
	var found bool
	env, err := parseEnvelope(body, forceResyncBody(&resp, &found))
	return finishForceResync(env, resp, found, err, status, ticketMatch)
}

// finishForceResync turns a decoded envelope into the Result or the error callers see.
func finishForceResync(env *envelope, resp *erpsync.Result, found bool, err error, status int, ticketMatch func(string) bool) (*erpsync.Result, error) {
	if err != nil {
		return nil, protocolError(status, err)
	}
	if err := env.err(status, ticketMatch); err != nil {
		return nil, err
	}
	if resp == nil {
		reason := "reply has no ForceResyncExternalResponse"
		if found {
			reason = "reply has no Response"
		}
		return nil, &erpsync.ProtocolError{HTTPStatus: status, Reason: reason}
	}
	return resp, nil
}

// err turns a fault or an exception into an error; nil when the envelope reports neither.
func (env *envelope) err(status int, ticketMatch func(string) bool) error {
	if env.fault != nil {
		env.fault.HTTPStatus = status
		return env.fault
	}
	if ex := env.exception; ex != nil {
		empty := ex.Type == "" && ex.Message == "" && ex.FriendlyText == "" && ex.Inner == nil
		if !(empty && (!env.hasSucceeded || env.succeeded)) {
			if ticketMatch != nil {
				ex.TicketRejected = exceptionMatches(ex, ticketMatch)
			}
			return ex
		}
	}
	if env.hasSucceeded && !env.succeeded {
		return &erpsync.ProtocolError{HTTPStatus: status, Reason: "Succeeded=false without ExceptionInfo"}
	}
	return nil
}

// exceptionMatches reports whether match accepts the type or message of e or an inner exception.
func exceptionMatches(e *erpsync.ExceptionError, match func(string) bool) bool {
	for i, x := 0, e; x != nil && i <= maxInnerExceptions; i, x = i+1, x.Inner {
		if match(x.Type) || match(x.Message) {
			return true
		}
	}
	return false
}

// protocolError wraps a parse failure.
func protocolError(status int, err error) *erpsync.ProtocolError {
	if errors.Is(err, errNotEnvelope) {
		return &erpsync.ProtocolError{HTTPStatus: status, Reason: "reply is not a SOAP envelope"}
	}
	if errors.Is(err, errTooDeep) {
		return &erpsync.ProtocolError{HTTPStatus: status, Reason: "reply nested too deep", Err: err}
	}
	var se *xml.SyntaxError
	if errors.As(err, &se) || errors.Is(err, io.ErrUnexpectedEOF) {
		return &erpsync.ProtocolError{HTTPStatus: status, Reason: "malformed XML", Err: err}
	}
	var ve *valueError
	if errors.As(err, &ve) {
		return &erpsync.ProtocolError{HTTPStatus: status, Reason: "invalid value", Err: err}
	}
	return &erpsync.ProtocolError{HTTPStatus: status, Reason: "malformed XML", Err: err}
}

// valueError is an element whose text is not of its XSD type.
type valueError struct {
	typ string
	val string
}

func (e *valueError) Error() string {
	return "not an " + e.typ + ": " + strconv.Quote(erpsync.Truncate(e.val, 40))
}

// parser is a thin layer over encoding/xml's token stream.
type parser struct {
	d     *xml.Decoder
	depth int // open elements, root included; at most maxDepth
}

// utf8BOM may start a UTF-8 document (XML 1.0 §4.3.3); encoding/xml would report it as
// character data before the root element.
var utf8BOM = []byte("\xEF\xBB\xBF")

func newParser(data []byte) *parser {
	d := xml.NewDecoder(bytes.NewReader(bytes.TrimPrefix(data, utf8BOM)))
	d.CharsetReader = charsetReader
	return &parser{d: d}
}

// charsetReader accepts the ASCII-compatible encodings a NetServer reply may declare.
func charsetReader(label string, in io.Reader) (io.Reader, error) {
	switch strings.ToLower(label) {
	case "utf-8", "utf8", "us-ascii", "ascii":
		return in, nil
	}
	return nil, errors.New("unsupported encoding " + strconv.Quote(erpsync.Truncate(label, 40)))
}

// firstElement returns the root element.
func (p *parser) firstElement() (xml.StartElement, error) {
	for {
		t, err := p.d.Token()
		if err != nil {
			if err == io.EOF {
				return xml.StartElement{}, errNotEnvelope
			}
			return xml.StartElement{}, err
		}
		switch t := t.(type) {
		case xml.StartElement:
			p.depth = 1
			return t, nil
		case xml.CharData:
			if len(bytes.TrimSpace(t)) != 0 {
				return xml.StartElement{}, errNotEnvelope
			}
		case xml.Directive: // <!DOCTYPE html> and the like: not SOAP
			return xml.StartElement{}, errNotEnvelope
		}
	}
}

// children calls fn for each child element of the element whose start tag was just read,
// and returns after its end tag. fn must consume the child through its end tag.
func (p *parser) children(fn func(xml.StartElement) error) error {
	for {
		t, err := p.token()
		if err != nil {
			return err
		}
		switch t := t.(type) {
		case xml.StartElement:
			if err := fn(t); err != nil {
				return err
			}
		case xml.EndElement:
			return nil
		}
	}
}

// token is Token with io.EOF inside an element reported as io.ErrUnexpectedEOF, and a
// nesting deeper than maxDepth as errTooDeep.
func (p *parser) token() (xml.Token, error) {
	t, err := p.d.Token()
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	switch t.(type) {
	case xml.StartElement:
		if p.depth++; p.depth > maxDepth {
			return nil, errTooDeep
		}
	case xml.EndElement:
		p.depth--
	}
	return t, err
}

// skip consumes the rest of the element whose start tag was just read.
func (p *parser) skip() error {
	depth := 0
	for {
		t, err := p.token()
		if err != nil {
			return err
		}
		switch t.(type) {
		case xml.StartElement:
			depth++
		case xml.EndElement:
			if depth == 0 {
				return nil
			}
			depth--
		}
	}
}

// text returns the character data directly inside the element whose start tag was just
// read, skipping any child elements, and consumes its end tag.
func (p *parser) text() (string, error) {
	var s string
	var buf []byte
	depth := 0
	for {
		t, err := p.token()
		if err != nil {
			return "", err
		}
		switch t := t.(type) {
		case xml.CharData:
			if depth != 0 {
				continue
			}
			switch {
			case buf != nil:
				buf = append(buf, t...)
			case s == "":
				s = string(t)
			default:
				buf = append([]byte(s), t...)
			}
		case xml.StartElement:
			depth++
		case xml.EndElement:
			if depth == 0 {
				if buf != nil {
					return string(buf), nil
				}
				return s, nil
			}
			depth--
		}
	}
}

func (p *parser) trimmedText() (string, error) {
	s, err := p.text()
	return strings.TrimSpace(s), err
}

// boolean reads an xs:boolean: true, false, 1 or 0, surrounding whitespace allowed.
func (p *parser) boolean() (bool, error) {
	s, err := p.trimmedText()
	if err != nil {
		return false, err
	}
	switch s {
	case "true", "1":
		return true, nil
	case "false", "0":
		return false, nil
	}
	return false, &valueError{typ: "xs:boolean", val: s}
}

// int32 reads an xs:int.
func (p *parser) int32() (int32, error) {
	s, err := p.trimmedText()
	if err != nil {
		return 0, err
	}
	n, perr := strconv.ParseInt(s, 10, 32)
	if perr != nil {
		return 0, &valueError{typ: "xs:int", val: s}
	}
	return int32(n), nil
}

// isNetServer reports whether name is in a NetServer service namespace.
func isNetServer(name xml.Name) bool {
	return strings.HasPrefix(name.Space, nsNetServerPrefix)
}

// isNil reports whether the element carries xsi:nil="true".
func isNil(se xml.StartElement) bool {
	for _, a := range se.Attr {
		if a.Name.Local == "nil" && a.Name.Space == nsXSI {
			v := strings.TrimSpace(a.Value)
			return v == "true" || v == "1"
		}
	}
	return false
}
