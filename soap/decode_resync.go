package soap

import (
	"bytes"
	"sync"

	"github.com/erpresync/erpresync/erpsync"
)

// This file is the ForceResyncExternal reply decoder: the walk of parseEnvelope and
// forceResyncBody, element for element and rule for rule, over the scanner instead of
// encoding/xml's token stream. It declines (errDecline) whatever the scanner or a value
// check does not accept, and parseForceResync then asks the general parser, so the two
// agree on every reply; FuzzDecoderDifferential holds them to it.

var scannerPool = sync.Pool{New: func() any { return new(scanner) }}

// decodeForceResync decodes a ForceResyncExternal reply. found reports whether a
// ForceResyncExternalResponse element was present. The error is errDecline or errTooDeep.
func decodeForceResync(data []byte) (env envelope, resp *erpsync.Result, found bool, err error) {
	s := scannerPool.Get().(*scanner)
	defer func() {
		s.reset(nil)
		scannerPool.Put(s)
	}()
	s.reset(data)
	if err := s.root(); err != nil {
		return envelope{}, nil, false, err
	}
	if string(s.localName()) != "Envelope" || (s.class != nsClassSOAP11 && s.class != nsClassSOAP12) {
		return envelope{}, nil, false, errDecline
	}
	soapNS := s.class
	env.soap12 = soapNS == nsClassSOAP12
	for {
		ok, err := s.child()
		if err != nil || !ok {
			return env, resp, found, err
		}
		switch {
		case s.class == soapNS && string(s.localName()) == "Header":
			for {
				ok, err := s.child()
				if err != nil {
					return env, nil, false, err
				}
				if !ok {
					break
				}
				if err := s.header(&env); err != nil {
					return env, nil, false, err
				}
			}
		case s.class == soapNS && string(s.localName()) == "Body":
			for {
				ok, err := s.child()
				if err != nil {
					return env, nil, false, err
				}
				if !ok {
					break
				}
				switch {
				case s.class == soapNS && string(s.localName()) == "Fault":
					f, err := s.fault()
					if err != nil {
						return env, nil, false, err
					}
					if env.fault == nil {
						env.fault = f
					}
				case s.class == nsClassNetServer && string(s.localName()) == "ForceResyncExternalResponse":
					found = true
					if err := s.forceResyncResponse(&resp); err != nil {
						return env, nil, false, err
					}
				default:
					if err := s.skip(); err != nil {
						return env, nil, false, err
					}
				}
			}
		default:
			if err := s.header(&env); err != nil {
				return env, nil, false, err
			}
		}
	}
}

// child reads up to the next child element of the current element and reports true, or
// through the current element's end tag and reports false. Text between is checked only.
func (s *scanner) child() (bool, error) {
	for {
		tok, err := s.next()
		switch {
		case err != nil:
			return false, err
		case tok == tokStart:
			return true, nil
		case tok == tokEnd:
			return false, nil
		}
	}
}

// skip reads through the end tag of the element whose start tag was just read.
func (s *scanner) skip() error {
	depth := 0
	for {
		tok, err := s.next()
		if err != nil {
			return err
		}
		switch tok {
		case tokStart:
			depth++
		case tokEnd:
			if depth == 0 {
				return nil
			}
			depth--
		}
	}
}

// netServer reports whether the current element is a NetServer element that is not nil.
func (s *scanner) netServer() bool { return s.class == nsClassNetServer && !s.isNil }

// text returns the character data directly inside the current element (child elements
// are read and left out) and reads its end tag. The bytes are valid until the next call.
func (s *scanner) text() ([]byte, error) {
	var out []byte
	segments, depth := 0, 0
	for {
		tok, err := s.next()
		if err != nil {
			return nil, err
		}
		switch tok {
		case tokText:
			if depth != 0 {
				continue
			}
			switch segments {
			case 0:
				out = s.segment()
			case 1:
				s.textBuf = append(s.textBuf[:0], out...) // before segment() reuses segBuf
				s.textBuf = append(s.textBuf, s.segment()...)
				out = s.textBuf
			default:
				s.textBuf = append(s.textBuf, s.segment()...)
				out = s.textBuf
			}
			segments++
		case tokStart:
			depth++
		case tokEnd:
			if depth == 0 {
				return out, nil
			}
			depth--
		}
	}
}

func (s *scanner) stringText() (string, error) {
	b, err := s.text()
	return string(b), err
}

func (s *scanner) trimmedText() ([]byte, error) {
	b, err := s.text()
	return bytes.TrimSpace(b), err
}

// intern returns b as a string, reusing a recent equal one: a reply names the same few
// tables in every record.
func (s *scanner) intern(b []byte) string {
	for _, v := range s.interned {
		if v == string(b) {
			return v
		}
	}
	v := string(b)
	s.interned[s.internNext] = v
	s.internNext = (s.internNext + 1) % len(s.interned)
	return v
}

// boolean reads an xs:boolean as parser.boolean does; any other text declines.
func (s *scanner) boolean() (bool, error) {
	b, err := s.trimmedText()
	if err != nil {
		return false, err
	}
	switch string(b) {
	case "true", "1":
		return true, nil
	case "false", "0":
		return false, nil
	}
	return false, errDecline
}

// int32 reads an xs:int as parser.int32 does (strconv.ParseInt base 10, 32 bits).
func (s *scanner) int32() (int32, error) {
	b, err := s.trimmedText()
	if err != nil {
		return 0, err
	}
	neg, digits := false, b
	if len(digits) > 0 && (digits[0] == '+' || digits[0] == '-') {
		neg, digits = digits[0] == '-', digits[1:]
	}
	if len(digits) == 0 || len(digits) > 10 {
		return 0, errDecline
	}
	var n int64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, errDecline
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	if n < -1<<31 || n > 1<<31-1 {
		return 0, errDecline
	}
	return int32(n), nil
}

// header handles one header element, as parser.header does.
func (s *scanner) header(env *envelope) error {
	if !s.netServer() {
		return s.skip()
	}
	switch string(s.localName()) {
	case "ExceptionInfo":
		ex, err := s.exception(0)
		if err != nil {
			return err
		}
		if env.exception == nil {
			env.exception = ex
		}
		return nil
	case "Succeeded":
		v, err := s.boolean()
		if err != nil {
			return err
		}
		env.succeeded, env.hasSucceeded = v, true
		return nil
	}
	return s.skip()
}

// exception reads a SoExceptionInfo, as parser.exception does.
func (s *scanner) exception(depth int) (*erpsync.ExceptionError, error) {
	ex := &erpsync.ExceptionError{}
	for {
		ok, err := s.child()
		if err != nil || !ok {
			return ex, err
		}
		if !s.netServer() {
			err = s.skip()
		} else {
			switch string(s.localName()) {
			case "ExceptionType":
				ex.Type, err = s.stringText()
			case "Message":
				ex.Message, err = s.stringText()
			case "FriendlyText":
				ex.FriendlyText, err = s.stringText()
			case "Source":
				ex.Source, err = s.stringText()
			case "InnerException":
				if depth >= maxInnerExceptions || ex.Inner != nil {
					err = s.skip()
				} else {
					ex.Inner, err = s.exception(depth + 1)
				}
			default:
				err = s.skip()
			}
		}
		if err != nil {
			return ex, err
		}
	}
}

// fault reads a SOAP 1.1 or 1.2 Fault, as parser.fault does: children by local name.
func (s *scanner) fault() (*erpsync.FaultError, error) {
	f := &erpsync.FaultError{}
	for {
		ok, err := s.child()
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		switch string(s.localName()) {
		case "faultcode":
			var b []byte
			b, err = s.trimmedText()
			f.Code = string(b)
		case "faultstring":
			f.Reason, err = s.stringText()
		case "Code":
			err = s.faultCode12(f, 0)
		case "Reason":
			for err == nil {
				var more bool
				if more, err = s.child(); err != nil || !more {
					break
				}
				if string(s.localName()) != "Text" || f.Reason != "" {
					err = s.skip()
				} else {
					f.Reason, err = s.stringText()
				}
			}
		default:
			err = s.skip()
		}
		if err != nil {
			return nil, err
		}
	}
	f.Sender = erpsync.SenderFault(f.Subcode, f.Code)
	return f, nil
}

// faultCode12 reads a SOAP 1.2 Code (depth 0) or Subcode, as parser.faultCode12 does.
func (s *scanner) faultCode12(f *erpsync.FaultError, depth int) error {
	for {
		ok, err := s.child()
		if err != nil || !ok {
			return err
		}
		switch string(s.localName()) {
		case "Value":
			var b []byte
			b, err = s.trimmedText()
			if depth == 0 {
				f.Code = string(b)
			} else {
				f.Subcode = string(b)
			}
		case "Subcode":
			if depth >= 8 {
				err = s.skip()
			} else {
				err = s.faultCode12(f, depth+1)
			}
		default:
			err = s.skip()
		}
		if err != nil {
			return err
		}
	}
}

// forceResyncResponse reads the children of ForceResyncExternalResponse: the first
// non-nil Response (or ForceResyncExternalResult) goes to *out.
func (s *scanner) forceResyncResponse(out **erpsync.Result) error {
	for {
		ok, err := s.child()
		if err != nil || !ok {
			return err
		}
		if !s.netServer() || (string(s.localName()) != "Response" && string(s.localName()) != "ForceResyncExternalResult") || *out != nil {
			err = s.skip()
		} else {
			*out, err = s.pluginResponse()
		}
		if err != nil {
			return err
		}
	}
}

// pluginResponse reads a PluginResponse, as parser.pluginResponse does.
func (s *scanner) pluginResponse() (*erpsync.Result, error) {
	r := &erpsync.Result{}
	hasStatus := false
	for {
		ok, err := s.child()
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		if !s.netServer() {
			err = s.skip()
		} else {
			switch string(s.localName()) {
			case "IsOk":
				r.IsOk, err = s.boolean()
			case "UserExplanation":
				r.UserExplanation, err = s.stringText()
			case "TechExplanation":
				r.TechExplanation, err = s.stringText()
			case "ErrorCode":
				r.ErrorCode, err = s.stringText()
			case "Changes":
				err = s.changes(&r.Changes)
			case "Status":
				var b []byte
				if b, err = s.trimmedText(); len(b) != 0 {
					hasStatus = true
					r.Status, _ = erpsync.ParseQuoteStatus(string(b))
					r.StatusName = statusName(b, r.Status)
				}
			default:
				err = s.skip()
			}
		}
		if err != nil {
			return nil, err
		}
	}
	if !hasStatus {
		r.StatusName = ""
		if r.IsOk {
			r.Status = erpsync.StatusOk
		} else {
			r.Status = erpsync.StatusError
		}
	}
	return r, nil
}

// statusName returns b as a string, without allocating when it is the status's own name.
func statusName(b []byte, st erpsync.QuoteStatus) string {
	if name := st.String(); name == string(b) {
		return name
	}
	return string(b)
}

// changes reads ChangedData, as parser.changes does.
func (s *scanner) changes(c *erpsync.Changes) error {
	for {
		ok, err := s.child()
		if err != nil || !ok {
			return err
		}
		var list *[]erpsync.ChangedItem
		if s.netServer() {
			switch string(s.localName()) {
			case "AddedRecords":
				list = &c.Added
			case "UpdatedRecords":
				list = &c.Updated
			case "DeletedRecords":
				list = &c.Deleted
			}
		}
		if list == nil {
			err = s.skip()
		} else {
			err = s.changedItems(list)
		}
		if err != nil {
			return err
		}
	}
}

// changedItems appends the ChangedDataItems of one records list.
func (s *scanner) changedItems(list *[]erpsync.ChangedItem) error {
	if *list == nil {
		*list = []erpsync.ChangedItem{}
	}
	for {
		ok, err := s.child()
		if err != nil || !ok {
			return err
		}
		if !s.netServer() || string(s.localName()) != "ChangedDataItem" {
			if err := s.skip(); err != nil {
				return err
			}
			continue
		}
		var it erpsync.ChangedItem
		for {
			ok, err := s.child()
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			if !s.netServer() {
				err = s.skip()
			} else {
				switch string(s.localName()) {
				case "Tablename":
					var b []byte
					b, err = s.text()
					it.Table = s.intern(b)
				case "RecordId":
					it.RecordID, err = s.int32()
				default:
					err = s.skip()
				}
			}
			if err != nil {
				return err
			}
		}
		*list = append(*list, it)
	}
}
