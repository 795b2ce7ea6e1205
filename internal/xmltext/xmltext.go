// Package xmltext writes text into XML by hand, for the SOAP envelopes of the ErpSync client
// and of the on-site login: the escaping and the check that a text can be carried at all,
// by the character rule of erpsync.IsXMLChar.
package xmltext

import (
	"unicode/utf8"

	"github.com/erpresync/erpresync/erpsync"
)

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
