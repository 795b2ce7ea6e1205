// Package xmltext is the XML that the ErpSync client (package soap), the on-site login
// (package auth) and the simulator share: the namespaces of NetServer's SOAP messages; the
// escaping and the check that a text can be carried at all, by the character rule of
// erpsync.IsXMLChar, for envelopes written by hand; and the decoder set-up and xsi:nil rule
// for replies read with encoding/xml.
package xmltext

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/erpresync/erpresync/erpsync"
)

// The namespaces of NetServer's SOAP messages (protocol reference §3).
const (
	SOAP11    = "http://schemas.xmlsoap.org/soap/envelope/"
	SOAP12    = "http://www.w3.org/2003/05/soap-envelope"
	NetServer = "http://www.superoffice.net/ws/crm/NetServer/Services88"
	Arrays    = "http://schemas.microsoft.com/2003/10/Serialization/Arrays"
	XSI       = "http://www.w3.org/2001/XMLSchema-instance"

	// NetServerPrefix is what every NetServer service namespace starts with; readers accept
	// elements of any ServicesNN version.
	NetServerPrefix = "http://www.superoffice.net/ws/crm/NetServer/"
)

// utf8BOM may start a UTF-8 document (XML 1.0 §4.3.3); encoding/xml would report it as
// character data before the root element.
var utf8BOM = []byte("\xEF\xBB\xBF")

// NewDecoder returns an encoding/xml decoder for a reply: a leading UTF-8 byte order mark
// skipped, and the encodings a NetServer reply may declare accepted (UTF-8 and ASCII; any
// other is an error naming it). The decoder is encoding/xml's default, Strict: it expands
// no entity but the five predefined ones and character references, and refuses invalid
// UTF-8.
func NewDecoder(data []byte) *xml.Decoder {
	d := xml.NewDecoder(bytes.NewReader(bytes.TrimPrefix(data, utf8BOM)))
	d.CharsetReader = charsetReader
	return d
}

func charsetReader(label string, in io.Reader) (io.Reader, error) {
	switch strings.ToLower(label) {
	case "utf-8", "utf8", "us-ascii", "ascii":
		return in, nil
	}
	return nil, errors.New("unsupported encoding " + strconv.Quote(erpsync.Truncate(label, 40)))
}

// IsNil reports whether an element carries xsi:nil="true" (or "1"), matched by namespace.
func IsNil(se xml.StartElement) bool {
	for _, a := range se.Attr {
		if a.Name.Local == "nil" && a.Name.Space == XSI {
			v := strings.TrimSpace(a.Value)
			return v == "true" || v == "1"
		}
	}
	return false
}

// AppendEscaped appends s as XML character data: & < > are escaped, CR is written as &#xD;
// so that it survives end-of-line normalisation, and characters XML 1.0 cannot carry
// (including invalid UTF-8) become U+FFFD.
func AppendEscaped(b []byte, s string) []byte {
	last := 0
	for i := 0; i < len(s); {
		c := s[i]
		var esc string
		size := 1
		if c < utf8.RuneSelf {
			switch {
			case c == '&':
				esc = "&amp;"
			case c == '<':
				esc = "&lt;"
			case c == '>':
				esc = "&gt;"
			case c == '\r':
				esc = "&#xD;"
			case c < 0x20 && c != '\t' && c != '\n':
				esc = "\uFFFD"
			default:
				i++
				continue
			}
		} else {
			var r rune
			r, size = utf8.DecodeRuneInString(s[i:])
			if (r != utf8.RuneError || size > 1) && erpsync.IsXMLChar(r) {
				i += size
				continue
			}
			esc = "\uFFFD"
		}
		b = append(b, s[last:i]...)
		b = append(b, esc...)
		i += size
		last = i
	}
	return append(b, s[last:]...)
}

// Valid reports whether s is valid UTF-8 made only of XML 1.0 characters.
func Valid(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !erpsync.IsXMLChar(r) {
			return false
		}
	}
	return true
}
