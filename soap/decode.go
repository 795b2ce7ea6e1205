package soap

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

// The reply decoder walks encoding/xml's token stream by hand, keeping only what it needs;
// nothing is unmarshalled into a tree. Its guards against a hostile reply: the HTTP read is
// capped (Config.MaxResponseBytes) before it gets here; nesting deeper than maxDepth stops
// the walk; encoding/xml's Strict mode expands no entity but the predefined ones and
// refuses invalid UTF-8 (xmltext.NewDecoder).

// maxDepth is the deepest element nesting a reply may have. NetServer's replies nest about
// ten deep; the limit keeps a hostile reply from costing a stack entry per level.
const maxDepth = 256

// errTooDeep is a reply nested deeper than maxDepth.
var errTooDeep = errors.New("elements nested deeper than 256")

// errNotEnvelope marks a reply that is XML (or not) but not a SOAP envelope; callers turn
// it into an erpsync.HTTPError or an erpsync.ProtocolError depending on the status.
var errNotEnvelope = errors.New("not a SOAP envelope")

// reply is what a ForceResyncExternal reply says.
type reply struct {
	soap12       bool
	succeeded    bool                    // the Succeeded header's value
	hasSucceeded bool                    // whether the Succeeded header was present
	exception    *erpsync.ExceptionError // ExceptionInfo header, nil when absent or nil
	fault        *erpsync.FaultError     // SOAP Fault in the body

	found     bool            // ForceResyncExternalResponse was present
	result    *erpsync.Result // its Response; nil when absent or nil
	hasIsOk   bool            // the Response held IsOk
	hasStatus bool            // the Response held a non-empty Status
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
func parseForceResync(body []byte, status int, ticketMatch func(string) bool) (*erpsync.Result, error) {
	var r reply
	if err := newParser(body).envelope(&r); err != nil {
		return nil, protocolError(status, err)
	}
	if err := r.err(status, ticketMatch); err != nil {
		return nil, err
	}
	if r.result == nil {
		reason := "reply has no ForceResyncExternalResponse"
		if r.found {
			reason = "reply has no Response"
		}
		return nil, &erpsync.ProtocolError{HTTPStatus: status, Reason: reason}
	}
	return erpsync.CompleteResult(r.result, r.hasIsOk, r.hasStatus, status)
}

// err turns a fault or an exception into an error; nil when the reply reports neither.
func (r *reply) err(status int, ticketMatch func(string) bool) error {
	if r.fault != nil {
		r.fault.HTTPStatus = status
		return r.fault
	}
	if ex := r.exception; ex != nil {
		empty := ex.Type == "" && ex.Message == "" && ex.FriendlyText == "" && ex.Inner == nil
		if !(empty && (!r.hasSucceeded || r.succeeded)) {
			if ticketMatch != nil {
				ex.TicketRejected = exceptionMatches(ex, ticketMatch)
			}
			return ex
		}
	}
	if r.hasSucceeded && !r.succeeded {
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
	var ve *valueError
	switch {
	case errors.Is(err, errNotEnvelope):
		return &erpsync.ProtocolError{HTTPStatus: status, Reason: "reply is not a SOAP envelope"}
	case errors.Is(err, errTooDeep):
		return &erpsync.ProtocolError{HTTPStatus: status, Reason: "reply nested too deep", Err: err}
	case errors.As(err, &ve):
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

// envelope walks a SOAP 1.1 or 1.2 envelope into r. Elements are matched by namespace and
// local name, never by prefix. Header elements are accepted inside <Header> or directly
// under <Envelope> (as SuperOffice's generated examples print them). Unknown elements are
// skipped. The error is errNotEnvelope, errTooDeep, a *valueError or encoding/xml's.
func (p *parser) envelope(r *reply) error {
	root, err := p.firstElement()
	if err != nil {
		return err
	}
	if root.Name.Local != "Envelope" || (root.Name.Space != xmltext.SOAP11 && root.Name.Space != xmltext.SOAP12) {
		return errNotEnvelope
	}
	r.soap12 = root.Name.Space == xmltext.SOAP12
	soapNS := root.Name.Space
	return p.children(func(se xml.StartElement) error {
		switch {
		case se.Name.Space == soapNS && se.Name.Local == "Header":
			return p.children(func(h xml.StartElement) error { return p.header(r, h) })
		case se.Name.Space == soapNS && se.Name.Local == "Body":
			return p.children(func(b xml.StartElement) error {
				switch {
				case b.Name.Space == soapNS && b.Name.Local == "Fault":
					f, err := p.fault()
					if r.fault == nil {
						r.fault = f
					}
					return err
				case isNetServer(b.Name) && b.Name.Local == "ForceResyncExternalResponse":
					r.found = true
					return p.forceResyncResponse(r)
				}
				return p.skip()
			})
		}
		return p.header(r, se)
	})
}

// header handles one SOAP header element.
func (p *parser) header(r *reply, se xml.StartElement) error {
	if !isNetServer(se.Name) || xmltext.IsNil(se) {
		return p.skip()
	}
	switch se.Name.Local {
	case "ExceptionInfo":
		ex, err := p.exception(0)
		if r.exception == nil {
			r.exception = ex
		}
		return err
	case "Succeeded":
		v, err := p.boolean()
		r.succeeded, r.hasSucceeded = v, true
		return err
	}
	return p.skip()
}

// exception parses the children of a SoExceptionInfo element.
func (p *parser) exception(depth int) (*erpsync.ExceptionError, error) {
	ex := &erpsync.ExceptionError{}
	err := p.children(func(se xml.StartElement) error {
		if !isNetServer(se.Name) || xmltext.IsNil(se) {
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
func (p *parser) fault() (*erpsync.FaultError, error) {
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

// forceResyncResponse parses the children of ForceResyncExternalResponse: the first
// non-nil Response (or ForceResyncExternalResult) is the PluginResponse.
func (p *parser) forceResyncResponse(r *reply) error {
	return p.children(func(se xml.StartElement) error {
		if !isNetServer(se.Name) || (se.Name.Local != "Response" && se.Name.Local != "ForceResyncExternalResult") || xmltext.IsNil(se) || r.result != nil {
			return p.skip()
		}
		r.result = &erpsync.Result{}
		return p.pluginResponse(r)
	})
}

// pluginResponse parses the children of a PluginResponse into r.result, in any order.
// TableRight and FieldProperties are ignored; whether IsOk and Status were there is noted
// for erpsync.CompleteResult.
func (p *parser) pluginResponse(r *reply) error {
	res := r.result
	return p.children(func(se xml.StartElement) error {
		if !isNetServer(se.Name) || xmltext.IsNil(se) {
			return p.skip()
		}
		var err error
		switch se.Name.Local {
		case "IsOk":
			res.IsOk, err = p.boolean()
			r.hasIsOk = true
		case "UserExplanation":
			res.UserExplanation, err = p.text()
		case "TechExplanation":
			res.TechExplanation, err = p.text()
		case "ErrorCode":
			res.ErrorCode, err = p.text()
		case "Changes":
			err = p.changes(&res.Changes)
		case "Status":
			var name string
			name, err = p.trimmedText()
			if name != "" {
				r.hasStatus = true
				res.StatusName = name
				res.Status, _ = erpsync.ParseQuoteStatus(name)
			}
		default:
			err = p.skip()
		}
		return err
	})
}

// changes parses ChangedData.
func (p *parser) changes(c *erpsync.Changes) error {
	return p.children(func(se xml.StartElement) error {
		if !isNetServer(se.Name) || xmltext.IsNil(se) {
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
			if !isNetServer(item.Name) || item.Name.Local != "ChangedDataItem" || xmltext.IsNil(item) {
				return p.skip()
			}
			it, err := p.changedItem()
			*list = append(*list, it)
			return err
		})
	})
}

// changedItem parses the children of a ChangedDataItem.
func (p *parser) changedItem() (erpsync.ChangedItem, error) {
	var it erpsync.ChangedItem
	err := p.children(func(f xml.StartElement) error {
		if !isNetServer(f.Name) || xmltext.IsNil(f) {
			return p.skip()
		}
		var err error
		switch f.Name.Local {
		case "Tablename":
			it.Table, err = p.tableName()
		case "RecordId":
			it.RecordID, err = p.int32()
		default:
			err = p.skip()
		}
		return err
	})
	return it, err
}

// parser is a thin layer over encoding/xml's token stream.
type parser struct {
	d     *xml.Decoder
	depth int    // open elements, root included; at most maxDepth
	buf   []byte // the text being read, reused from value to value
	table string // the last table name read: a reply names few tables
}

func newParser(data []byte) *parser {
	return &parser{d: xmltext.NewDecoder(data)}
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
	return p.textBytes(false)
}

// textBytes consumes the rest of the element whose start tag was just read; with keep, it
// leaves in p.buf the character data directly inside it (child elements are skipped).
func (p *parser) textBytes(keep bool) error {
	p.buf = p.buf[:0]
	depth := 0
	for {
		t, err := p.token()
		if err != nil {
			return err
		}
		switch t := t.(type) {
		case xml.CharData:
			if keep && depth == 0 {
				p.buf = append(p.buf, t...)
			}
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
	err := p.textBytes(true)
	return string(p.buf), err
}

func (p *parser) trimmedText() (string, error) {
	err := p.textBytes(true)
	return string(bytes.TrimSpace(p.buf)), err
}

// tableName is text, sharing the string of the previous table name when it is the same.
func (p *parser) tableName() (string, error) {
	err := p.textBytes(true)
	if string(p.buf) != p.table {
		p.table = string(p.buf)
	}
	return p.table, err
}

// boolean reads an xs:boolean: true, false, 1 or 0, surrounding whitespace allowed.
func (p *parser) boolean() (bool, error) {
	if err := p.textBytes(true); err != nil {
		return false, err
	}
	switch s := bytes.TrimSpace(p.buf); string(s) {
	case "true", "1":
		return true, nil
	case "false", "0":
		return false, nil
	default:
		return false, &valueError{typ: "xs:boolean", val: string(s)}
	}
}

// int32 reads an xs:int.
func (p *parser) int32() (int32, error) {
	if err := p.textBytes(true); err != nil {
		return 0, err
	}
	s := bytes.TrimSpace(p.buf)
	n, err := strconv.ParseInt(string(s), 10, 32)
	if err != nil {
		return 0, &valueError{typ: "xs:int", val: string(s)}
	}
	return int32(n), nil
}

// isNetServer reports whether name is in a NetServer service namespace.
func isNetServer(name xml.Name) bool {
	return strings.HasPrefix(name.Space, xmltext.NetServerPrefix)
}
