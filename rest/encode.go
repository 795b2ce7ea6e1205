package rest

import (
	"strconv"
	"unicode/utf8"

	"github.com/erpresync/erpresync/erpsync"
)

// appendRequest appends the ForceResyncExternal request body:
// {"ErpConnectionId":3,"ErpActorType":"Customer","ExternalKeys":["10001","10002"]}. An
// empty keys slice is written as [] (resync everything; only ForceResyncAll sends it).
func appendRequest(b []byte, erpConnectionID int, actor erpsync.ActorType, keys []string) []byte {
	b = append(b, `{"ErpConnectionId":`...)
	b = strconv.AppendInt(b, int64(erpConnectionID), 10)
	b = append(b, `,"ErpActorType":"`...)
	b = append(b, actor.String()...)
	b = append(b, `","ExternalKeys":[`...)
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
	}
	return append(b, "]}"...)
}

// requestSize estimates the body size so the buffer is allocated once.
func requestSize(keys []string) int {
	n := 96
	for _, k := range keys {
		n += len(k) + 3
	}
	return n
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string: " and \ escaped, control characters as \n, \r,
// \t or \u00XX, U+2028 and U+2029 as \u2028 and \u2029, invalid UTF-8 as U+FFFD (as
// encoding/json does). HTML characters are left as they are.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	last := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[last:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			last = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[last:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[last:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		last = i
	}
	b = append(b, s[last:]...)
	return append(b, '"')
}
