package rest

import (
	"errors"
	"strconv"

	"github.com/valyala/fastjson"

	"github.com/erpresync/erpresync/erpsync"
)

var parsers fastjson.ParserPool

// decodeResponse parses the body of a 2xx reply: a PluginResponse gives the Result; the
// error object {"Error": true, ...} and {"Message", "MessageDetail"} give an
// *erpsync.ExceptionError; null, anything without IsOk (erpsync.CompleteResult) and anything
// unreadable give an *erpsync.ProtocolError (status is the HTTP status, 0 when unknown). It never panics and
// is safe for concurrent use; the Result shares no memory with body.
func decodeResponse(body []byte, status int) (*erpsync.Result, error) {
	p := parsers.Get()
	defer parsers.Put(p)
	v, err := p.ParseBytes(body)
	if err != nil {
		return nil, parseError(body, status, err)
	}
	switch v.Type() {
	case fastjson.TypeNull:
		return nil, &erpsync.ProtocolError{HTTPStatus: status, Reason: "the agent answered null (a failed call; SuperOffice gives no reason)"}
	case fastjson.TypeObject:
	default:
		return nil, &erpsync.ProtocolError{HTTPStatus: status, Reason: "reply is a JSON " + v.Type().String() + ", not an object"}
	}
	o, _ := v.Object()
	if ex := exceptionOf(o); ex != nil {
		return nil, ex
	}
	r, hasIsOk, hasStatus, err := result(o)
	if err != nil {
		return nil, &erpsync.ProtocolError{HTTPStatus: status, Reason: "invalid value", Err: err}
	}
	return erpsync.CompleteResult(r, hasIsOk, hasStatus, status)
}

// decodeError reads the body of a non-2xx reply: the exception it carries, or nil when it
// is not an error object or a Message.
func decodeError(body []byte) *erpsync.ExceptionError {
	p := parsers.Get()
	defer parsers.Put(p)
	v, err := p.ParseBytes(body)
	if err != nil || v.Type() != fastjson.TypeObject {
		return nil
	}
	o, _ := v.Object()
	return exceptionOf(o)
}

func parseError(body []byte, status int, err error) *erpsync.ProtocolError {
	for _, c := range body {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '{', '[', '"', '-', 't', 'f', 'n', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
			// fastjson's message quotes the unparsed tail, which may hold anything the
			// server echoed: keep only its position-free first part.
			return &erpsync.ProtocolError{HTTPStatus: status, Reason: "malformed JSON", Err: errors.New(erpsync.Truncate(firstClause(err.Error()), 80))}
		}
		break
	}
	if len(body) == 0 {
		return &erpsync.ProtocolError{HTTPStatus: status, Reason: "empty reply"}
	}
	return &erpsync.ProtocolError{HTTPStatus: status, Reason: "reply is not JSON"}
}

// firstClause cuts an error message at its first ';' (fastjson appends "; unparsed tail: …").
func firstClause(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == ';' {
			return s[:i]
		}
	}
	return s
}

// exceptionOf recognises the two error shapes: the WebAPI error object
// {"Error": true, "ErrorType", "ErrorMessage", "ErrorSource"}, and ASP.NET's
// {"Message", "MessageDetail"} (without IsOk). Otherwise it returns nil.
func exceptionOf(o *fastjson.Object) *erpsync.ExceptionError {
	var isError, hasMessage, hasIsOk bool
	var typ, msg, source, message, detail string
	o.Visit(func(k []byte, v *fastjson.Value) {
		switch {
		case is(k, "Error"):
			isError = v.Type() == fastjson.TypeTrue
		case is(k, "ErrorType"):
			typ = str(v)
		case is(k, "ErrorMessage"):
			msg = str(v)
		case is(k, "ErrorSource"):
			source = str(v)
		case is(k, "Message"):
			hasMessage, message = true, str(v)
		case is(k, "MessageDetail"):
			detail = str(v)
		case is(k, "IsOk"):
			hasIsOk = true
		}
	})
	switch {
	case isError:
		return &erpsync.ExceptionError{Type: typ, Message: msg, Source: source}
	case hasMessage && !hasIsOk:
		ex := &erpsync.ExceptionError{Message: message}
		if detail != "" {
			ex.Inner = &erpsync.ExceptionError{Message: detail}
		}
		return ex
	}
	return nil
}

// result reads a PluginResponse's members, and whether IsOk and Status were among them
// (erpsync.CompleteResult decides what their absence means). TableRight and FieldProperties
// are ignored.
func result(o *fastjson.Object) (r *erpsync.Result, hasIsOk, hasStatus bool, err error) {
	r = &erpsync.Result{}
	fail := func(name string, v *fastjson.Value, want string) {
		if err == nil {
			err = errors.New(name + " is a JSON " + v.Type().String() + ", want " + want)
		}
	}
	o.Visit(func(k []byte, v *fastjson.Value) {
		switch {
		case is(k, "IsOk"):
			switch v.Type() {
			case fastjson.TypeTrue:
				r.IsOk, hasIsOk = true, true
			case fastjson.TypeFalse:
				r.IsOk, hasIsOk = false, true
			default:
				fail("IsOk", v, "true or false")
			}
		case is(k, "UserExplanation"):
			r.UserExplanation = str(v)
		case is(k, "TechExplanation"):
			r.TechExplanation = str(v)
		case is(k, "ErrorCode"):
			r.ErrorCode = str(v)
		case is(k, "Status"):
			switch v.Type() {
			case fastjson.TypeString:
				if name := str(v); name != "" {
					hasStatus = true
					r.StatusName = name
					r.Status, _ = erpsync.ParseQuoteStatus(name)
				}
			case fastjson.TypeNumber:
				n, nerr := v.Int()
				hasStatus = true
				r.Status = erpsync.QuoteStatus(n)
				if nerr != nil || n < 0 || n > int(erpsync.StatusError) {
					r.Status = erpsync.StatusUnknown
					r.StatusName = string(v.MarshalTo(nil))
				} else {
					r.StatusName = r.Status.String()
				}
			case fastjson.TypeNull:
			default:
				fail("Status", v, "a name")
			}
		case is(k, "Changes"):
			if cerr := changes(v, &r.Changes); cerr != nil && err == nil {
				err = cerr
			}
		}
	})
	if err != nil {
		return nil, false, false, err
	}
	return r, hasIsOk, hasStatus, nil
}

// changes reads ChangedData; null leaves c empty.
func changes(v *fastjson.Value, c *erpsync.Changes) error {
	switch v.Type() {
	case fastjson.TypeNull:
		return nil
	case fastjson.TypeObject:
	default:
		return errors.New("Changes is a JSON " + v.Type().String() + ", want an object or null")
	}
	o, _ := v.Object()
	var err error
	o.Visit(func(k []byte, v *fastjson.Value) {
		var list *[]erpsync.ChangedItem
		var name string
		switch {
		case is(k, "AddedRecords"):
			list, name = &c.Added, "AddedRecords"
		case is(k, "UpdatedRecords"):
			list, name = &c.Updated, "UpdatedRecords"
		case is(k, "DeletedRecords"):
			list, name = &c.Deleted, "DeletedRecords"
		default:
			return
		}
		if e := items(v, list, name); e != nil && err == nil {
			err = e
		}
	})
	return err
}

func items(v *fastjson.Value, list *[]erpsync.ChangedItem, name string) error {
	switch v.Type() {
	case fastjson.TypeNull:
		return nil
	case fastjson.TypeArray:
	default:
		return errors.New(name + " is a JSON " + v.Type().String() + ", want an array or null")
	}
	arr, _ := v.Array()
	out := make([]erpsync.ChangedItem, 0, len(arr))
	var lastTable string // a reply names few tables: reuse the string of the previous item
	for i, it := range arr {
		switch it.Type() {
		case fastjson.TypeNull:
			continue
		case fastjson.TypeObject:
		default:
			return errors.New(name + "[" + strconv.Itoa(i) + "] is a JSON " + it.Type().String() + ", want an object")
		}
		o, _ := it.Object()
		var ci erpsync.ChangedItem
		var err error
		o.Visit(func(k []byte, f *fastjson.Value) {
			switch {
			case is(k, "Tablename"):
				if b, _ := f.StringBytes(); string(b) == lastTable {
					ci.Table = lastTable
				} else {
					ci.Table = string(b)
					lastTable = ci.Table
				}
			case is(k, "RecordId"):
				if f.Type() == fastjson.TypeNull {
					return
				}
				n, e := f.Int64()
				if e != nil || n < -1<<31 || n > 1<<31-1 {
					err = errors.New(name + "[" + strconv.Itoa(i) + "].RecordId is not a 32-bit integer: " + erpsync.Truncate(string(f.MarshalTo(nil)), 40))
					return
				}
				ci.RecordID = int32(n)
			}
		})
		if err != nil {
			return err
		}
		out = append(out, ci)
	}
	*list = out
	return nil
}

// str returns a JSON string's value; null and other types give "".
func str(v *fastjson.Value) string {
	if v.Type() != fastjson.TypeString {
		return ""
	}
	b, _ := v.StringBytes()
	return string(b)
}

// is reports whether a member name is name, ignoring ASCII case (JSON.NET, behind the
// WebAPI, matches member names that way too).
func is(k []byte, name string) bool {
	if len(k) != len(name) {
		return false
	}
	for i := 0; i < len(k); i++ {
		a, b := k[i], name[i]
		if a|0x20 != b|0x20 {
			return false
		}
		if a != b && (a|0x20 < 'a' || a|0x20 > 'z') {
			return false
		}
	}
	return true
}
