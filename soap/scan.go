package soap

import (
	"bytes"
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/erpresync/erpresync/erpsync"
)

// scanner is the tokenizer under the ForceResyncExternal reply decoder: it walks the reply
// in place, allocates nothing per token, and resolves namespaces by URI into a few classes.
//
// It accepts a strict subset of what encoding/xml's strict Decoder accepts, and gives the
// same tokens for it: names of ASCII letters, digits and _ : . - with at most one inner colon;
// the five predefined entities and character references to XML characters; comments,
// CDATA sections and processing instructions; text that is UTF-8 of XML characters. Anything
// else — a DOCTYPE or other directive, a non-ASCII name, a malformed construct — makes it
// return errDecline, and the reply goes to the general parser (parseEnvelope), which accepts
// the odd forms and words the error exactly. A nesting deeper than maxDepth is errTooDeep.
type scanner struct {
	data []byte
	pos  int

	// Positions, not slices, so that the hot path writes no pointers (no GC write barriers).
	open  []span    // raw qualified names of the open elements, for end-tag matching
	marks []int     // len(binds) when each open element started
	binds []binding // namespace declarations in scope, innermost last
	nils  []nilAttr // the current start tag's p:nil attributes, in order

	pendingEnd bool // the last start tag was self-closing: its end comes next

	// The current start tag (after tokStart).
	local span
	class nsClass
	isNil bool

	// The current text run (after tokText): data[segStart:segEnd], raw.
	segStart, segEnd int
	segDecode        bool // holds entities or CRs: decode with appendSegment
	segCDATA         bool

	segBuf, textBuf []byte
	interned        [8]string // recent table names and the like, reused across records
	internNext      int
}

// errDecline: the scanner does not accept this reply; the general parser decides.
var errDecline = errors.New("soap: reply left to the general parser")

// maxDepth is the deepest element nesting a reply may have. NetServer's replies nest about
// a dozen deep; the cap keeps a hostile reply from costing memory in proportion to its depth.
const maxDepth = 256

// errTooDeep is a reply nested deeper than maxDepth.
var errTooDeep = errors.New("elements nested deeper than 256")

// nsClass is a namespace URI as the decoder cares about it.
type nsClass uint8

const (
	nsOther nsClass = iota
	nsClassSOAP11
	nsClassSOAP12
	nsClassXSI
	nsClassNetServer // any http://www.superoffice.net/ws/crm/NetServer/… namespace
)

func classOf(uri []byte) nsClass {
	switch string(uri) {
	case nsSOAP11:
		return nsClassSOAP11
	case nsSOAP12:
		return nsClassSOAP12
	case nsXSI:
		return nsClassXSI
	}
	if bytes.HasPrefix(uri, []byte(nsNetServerPrefix)) {
		return nsClassNetServer
	}
	return nsOther
}

// span is data[start:end].
type span struct{ start, end int }

type binding struct {
	prefix span // empty for the default namespace
	class  nsClass
}

type nilAttr struct {
	prefix, value span
	decode        bool
}

type token uint8

const (
	tokStart token = iota + 1
	tokEnd
	tokText
)

// reset prepares s for data, keeping its buffers unless a hostile reply made them large.
func (s *scanner) reset(data []byte) {
	*s = scanner{
		data: data, open: s.open[:0], marks: s.marks[:0], binds: keep(s.binds),
		nils: keep(s.nils), segBuf: keep(s.segBuf), textBuf: keep(s.textBuf),
	}
}

// keep returns b emptied, or nil when it has grown past 64 KiB worth of elements.
func keep[T any](b []T) []T {
	if cap(b) > 1<<16 {
		return nil
	}
	return b[:0]
}

// root reads up to and including the root start tag, skipping a BOM, whitespace, comments
// and processing instructions.
func (s *scanner) root() error {
	s.pos = len(s.data) - len(bytes.TrimPrefix(s.data, utf8BOM))
	for {
		for s.pos < len(s.data) && isSpace(s.data[s.pos]) {
			s.pos++
		}
		if s.pos+1 >= len(s.data) || s.data[s.pos] != '<' {
			return errDecline
		}
		switch s.data[s.pos+1] {
		case '?':
			if err := s.procInst(); err != nil {
				return err
			}
		case '!':
			if !bytes.HasPrefix(s.data[s.pos:], []byte("<!--")) {
				return errDecline
			}
			if err := s.comment(); err != nil {
				return err
			}
		default:
			tok, err := s.next()
			if err != nil {
				return err
			}
			if tok != tokStart {
				return errDecline
			}
			return nil
		}
	}
}

// next reads the next start tag, end tag or text run; comments and processing instructions
// are checked and passed over.
func (s *scanner) next() (token, error) {
	if s.pendingEnd {
		s.pendingEnd = false
		s.pop()
		return tokEnd, nil
	}
	for {
		if s.pos >= len(s.data) {
			return 0, errDecline // EOF inside an element
		}
		if s.data[s.pos] != '<' {
			return tokText, s.textRun()
		}
		if s.pos+1 >= len(s.data) {
			return 0, errDecline
		}
		switch s.data[s.pos+1] {
		case '/':
			return tokEnd, s.endTag()
		case '?':
			if err := s.procInst(); err != nil {
				return 0, err
			}
		case '!':
			rest := s.data[s.pos:]
			switch {
			case bytes.HasPrefix(rest, []byte("<!--")):
				if err := s.comment(); err != nil {
					return 0, err
				}
			case bytes.HasPrefix(rest, []byte("<![CDATA[")):
				return tokText, s.cdata()
			default: // a directive: <!DOCTYPE, <!ENTITY …
				return 0, errDecline
			}
		default:
			return tokStart, s.startTag()
		}
	}
}

// startTag reads <name attr="v" …> or …/> at s.pos.
func (s *scanner) startTag() error {
	s.pos++
	qname, prefix, local, ok := s.name()
	if !ok {
		return errDecline
	}
	mark := len(s.binds)
	s.nils = s.nils[:0]
	for {
		s.space()
		if s.pos >= len(s.data) {
			return errDecline
		}
		b := s.data[s.pos]
		if b == '/' {
			if s.pos+1 >= len(s.data) || s.data[s.pos+1] != '>' {
				return errDecline
			}
			s.pos += 2
			s.pendingEnd = true
			break
		}
		if b == '>' {
			s.pos++
			break
		}
		_, apfx, alocal, ok := s.name()
		if !ok {
			return errDecline
		}
		s.space()
		if s.pos >= len(s.data) || s.data[s.pos] != '=' {
			return errDecline
		}
		s.pos++
		s.space()
		if s.pos >= len(s.data) || (s.data[s.pos] != '"' && s.data[s.pos] != '\'') {
			return errDecline
		}
		quote := s.data[s.pos]
		s.pos++
		val := span{start: s.pos}
		decode, ok := s.scanChars(quote)
		if !ok {
			return errDecline
		}
		val.end = s.pos - 1
		switch {
		case s.is(apfx, "xmlns") || (apfx.empty() && s.is(alocal, "xmlns")):
			if apfx.empty() {
				alocal = span{} // the default namespace
			}
			v := s.data[val.start:val.end]
			if decode {
				v = appendDecoded(nil, v, false)
			}
			s.binds = append(s.binds, binding{prefix: alocal, class: classOf(v)})
		case s.is(alocal, "nil") && !apfx.empty() && !s.is(apfx, "xml"):
			s.nils = append(s.nils, nilAttr{prefix: apfx, value: val, decode: decode})
		}
	}
	// Declarations on the tag apply to its own name and attributes, as in encoding/xml.
	s.local, s.isNil = local, false
	switch {
	case s.is(prefix, "xml") || s.is(prefix, "xmlns") || (prefix.empty() && s.is(local, "xmlns")):
		s.class = nsOther
	default:
		s.class = s.lookup(prefix)
	}
	for _, a := range s.nils {
		if s.lookup(a.prefix) == nsClassXSI {
			v := s.data[a.value.start:a.value.end]
			if a.decode {
				v = appendDecoded(nil, v, false)
			}
			v = bytes.TrimSpace(v)
			s.isNil = string(v) == "true" || string(v) == "1"
			break
		}
	}
	if len(s.open) >= maxDepth {
		return errTooDeep
	}
	s.open = append(s.open, qname)
	s.marks = append(s.marks, mark)
	return nil
}

// localName is the current start tag's local name.
func (s *scanner) localName() []byte { return s.data[s.local.start:s.local.end] }

func (sp span) empty() bool { return sp.start == sp.end }

// is reports whether data[sp] is v.
func (s *scanner) is(sp span, v string) bool { return string(s.data[sp.start:sp.end]) == v }

// lookup resolves a prefix (empty for the default namespace); an undeclared prefix is nsOther.
func (s *scanner) lookup(prefix span) nsClass {
	p := s.data[prefix.start:prefix.end]
	for i := len(s.binds) - 1; i >= 0; i-- {
		b := s.binds[i].prefix
		if bytes.Equal(s.data[b.start:b.end], p) {
			return s.binds[i].class
		}
	}
	return nsOther
}

// endTag reads </name> at s.pos; the name must be the innermost open element's.
func (s *scanner) endTag() error {
	s.pos += 2
	qname, _, _, ok := s.name()
	if !ok {
		return errDecline
	}
	s.space()
	if s.pos >= len(s.data) || s.data[s.pos] != '>' || len(s.open) == 0 {
		return errDecline
	}
	top := s.open[len(s.open)-1]
	if !bytes.Equal(s.data[qname.start:qname.end], s.data[top.start:top.end]) {
		return errDecline
	}
	s.pos++
	s.pop()
	return nil
}

func (s *scanner) pop() {
	n := len(s.open) - 1
	s.binds = s.binds[:s.marks[n]]
	s.open, s.marks = s.open[:n], s.marks[:n]
}

// name reads a name at s.pos: ASCII, a letter, _ or : first, at most one colon and not at
// either end (other names are left to the general parser).
func (s *scanner) name() (qname, prefix, local span, ok bool) {
	data := s.data
	start, colon, i := s.pos, -1, s.pos
	for ; i < len(data); i++ {
		b := data[i]
		if !nameByte[b] {
			if b >= utf8.RuneSelf {
				return span{}, span{}, span{}, false
			}
			break
		}
		if b == ':' {
			if colon >= 0 {
				return span{}, span{}, span{}, false
			}
			colon = i
		}
	}
	s.pos = i
	if i == start || !nameStart[data[start]] || colon == start || colon == i-1 {
		return span{}, span{}, span{}, false
	}
	qname = span{start, i}
	if colon < 0 {
		return qname, span{start, start}, qname, true
	}
	return qname, span{start, colon}, span{colon + 1, i}, true
}

// space skips XML whitespace.
func (s *scanner) space() {
	for s.pos < len(s.data) && isSpace(s.data[s.pos]) {
		s.pos++
	}
}

func isSpace(b byte) bool { return b == ' ' || b == '\n' || b == '\t' || b == '\r' }

// textRun reads a text run at s.pos up to the next '<'.
func (s *scanner) textRun() error {
	s.segStart, s.segCDATA = s.pos, false
	decode, ok := s.scanChars(0)
	if !ok {
		return errDecline
	}
	s.segEnd, s.segDecode = s.pos, decode
	return nil
}

// cdata reads <![CDATA[…]]> at s.pos.
func (s *scanner) cdata() error {
	s.pos += len("<![CDATA[")
	end := bytes.Index(s.data[s.pos:], []byte("]]>"))
	if end < 0 {
		return errDecline
	}
	s.segStart, s.segEnd, s.segCDATA, s.segDecode = s.pos, s.pos+end, true, false
	for i := s.segStart; i < s.segEnd; {
		b := s.data[i]
		switch {
		case b >= utf8.RuneSelf:
			r, n := utf8.DecodeRune(s.data[i:s.segEnd])
			if (r == utf8.RuneError && n == 1) || !erpsync.IsXMLChar(r) {
				return errDecline
			}
			i += n
			continue
		case b == '\r':
			s.segDecode = true
		case b < 0x20 && b != '\t' && b != '\n':
			return errDecline
		}
		i++
	}
	s.pos = s.segEnd + len("]]>")
	return nil
}

// comment passes over <!--…-->; "--" may only end it.
func (s *scanner) comment() error {
	s.pos += len("<!--")
	i := bytes.Index(s.data[s.pos:], []byte("--"))
	if i < 0 || s.pos+i+2 >= len(s.data) || s.data[s.pos+i+2] != '>' {
		return errDecline
	}
	s.pos += i + 3
	return nil
}

// procInst passes over <?target …?>; the XML declaration must say version 1.0 (or
// nothing) and an encoding the general parser accepts without conversion.
func (s *scanner) procInst() error {
	s.pos += 2
	target, _, _, ok := s.name()
	if !ok {
		return errDecline
	}
	isXML := s.is(target, "xml")
	s.space()
	end := bytes.Index(s.data[s.pos:], []byte("?>"))
	if end < 0 {
		return errDecline
	}
	content := s.data[s.pos : s.pos+end]
	s.pos += end + 2
	if !isXML {
		return nil
	}
	return checkXMLDecl(string(content))
}

// checkXMLDecl accepts an XML declaration that says version 1.0 (or nothing) and an
// encoding that charsetReader passes through unchanged.
func checkXMLDecl(content string) error {
	if v := procInstParam("version", content); v != "" && v != "1.0" {
		return errDecline
	}
	if enc := procInstParam("encoding", content); enc != "" && !strings.EqualFold(enc, "utf-8") {
		switch strings.ToLower(enc) {
		case "utf8", "us-ascii", "ascii":
		default:
			return errDecline
		}
	}
	return nil
}

// procInstParam returns the value of param="…" or param='…' in a processing instruction,
// "" if absent, found exactly as encoding/xml finds it (so both parsers read the same
// version and encoding out of an odd declaration).
func procInstParam(param, s string) string {
	param += "="
	lenp := len(param)
	i := 0
	var sep byte
	for i < len(s) {
		sub := s[i:]
		k := strings.Index(sub, param)
		if k < 0 || lenp+k >= len(sub) {
			return ""
		}
		i += lenp + k + 1
		if c := sub[lenp+k]; c == '\'' || c == '"' {
			sep = c
			break
		}
	}
	if sep == 0 {
		return ""
	}
	j := strings.IndexByte(s[i:], sep)
	if j < 0 {
		return ""
	}
	return s[i : i+j]
}

// scanChars checks character data from s.pos: up to '<' for text (quote 0, s.pos left at
// the '<' or the end), or through the closing quote for an attribute value. It reports
// whether the data holds entity references or CRs, which appendDecoded rewrites.
func (s *scanner) scanChars(quote byte) (decode, ok bool) {
	data, start := s.data, s.pos
	i := s.pos
	for i < len(data) {
		b := data[i]
		if plainChar[b] {
			i++
			continue
		}
		switch {
		case b == quote && quote != 0:
			s.pos = i + 1
			return decode, true
		case b == '<':
			if quote != 0 {
				return false, false
			}
			s.pos = i
			return decode, true
		case b == '&':
			_, n := entityAt(data[i:])
			if n == 0 {
				return false, false
			}
			decode = true
			i += n
		case b == '\r':
			decode = true
			i++
		case b == '>':
			// "]]>" is not allowed in text (encoding/xml counts raw bytes since the run began).
			if quote == 0 && i-start >= 2 && data[i-1] == ']' && data[i-2] == ']' {
				return false, false
			}
			i++
		case b >= utf8.RuneSelf:
			r, n := utf8.DecodeRune(data[i:])
			if (r == utf8.RuneError && n == 1) || !erpsync.IsXMLChar(r) {
				return false, false
			}
			i += n
		case b == '\t' || b == '\n' || b == '"' || b == '\'':
			i++
		default: // other control characters
			return false, false
		}
	}
	if quote != 0 {
		return false, false
	}
	s.pos = i
	return decode, true
}

// entityAt reads a predefined entity or a character reference at b[0] == '&' and returns
// its expansion and length; n is 0 for anything else (left to the general parser).
func entityAt(b []byte) (r rune, n int) {
	if len(b) < 3 {
		return 0, 0
	}
	if b[1] != '#' {
		end := bytes.IndexByte(b[:min(len(b), 6)], ';')
		if end < 0 {
			return 0, 0
		}
		switch string(b[1:end]) {
		case "lt":
			return '<', end + 1
		case "gt":
			return '>', end + 1
		case "amp":
			return '&', end + 1
		case "apos":
			return '\'', end + 1
		case "quot":
			return '"', end + 1
		}
		return 0, 0
	}
	i, base := 2, rune(10)
	if b[2] == 'x' {
		i, base = 3, 16
	}
	start := i
	for ; i < len(b) && i-start < 8; i++ {
		c := b[i]
		var d rune
		switch {
		case '0' <= c && c <= '9':
			d = rune(c - '0')
		case base == 16 && 'a' <= c && c <= 'f':
			d = rune(c-'a') + 10
		case base == 16 && 'A' <= c && c <= 'F':
			d = rune(c-'A') + 10
		default:
			d = -1
		}
		if d < 0 {
			break
		}
		r = r*base + d
	}
	if i == start || i >= len(b) || b[i] != ';' || !erpsync.IsXMLChar(r) {
		return 0, 0
	}
	return r, i + 1
}

// appendDecoded appends raw character data with entities expanded and CR LF and lone CRs
// turned into LF, as encoding/xml delivers it. Raw must have passed scanChars (or cdata, for
// which entities stay as they are).
func appendDecoded(dst, raw []byte, cdata bool) []byte {
	for i := 0; i < len(raw); {
		b := raw[i]
		switch {
		case b == '&' && !cdata:
			r, n := entityAt(raw[i:])
			dst = utf8.AppendRune(dst, r)
			i += n
			continue
		case b == '\r':
			dst = append(dst, '\n')
			if i+1 < len(raw) && raw[i+1] == '\n' {
				i++
			}
		default:
			dst = append(dst, b)
		}
		i++
	}
	return dst
}

// segment returns the current text run, decoded into s.segBuf when it needs decoding.
func (s *scanner) segment() []byte {
	raw := s.data[s.segStart:s.segEnd]
	if !s.segDecode {
		return raw
	}
	s.segBuf = appendDecoded(s.segBuf[:0], raw, s.segCDATA)
	return s.segBuf
}

var nameByte, nameStart, plainChar [256]bool

func init() {
	for c := 0; c < 256; c++ {
		b := byte(c)
		letter := 'A' <= b && b <= 'Z' || 'a' <= b && b <= 'z'
		nameStart[c] = letter || b == '_' || b == ':'
		nameByte[c] = nameStart[c] || '0' <= b && b <= '9' || b == '.' || b == '-'
		plainChar[c] = b >= 0x20 && b < utf8.RuneSelf && b != '<' && b != '&' && b != '>' && b != '"' && b != '\''
	}
}
