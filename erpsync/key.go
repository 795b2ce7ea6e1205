package erpsync

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxKeyLength is the longest external key NetServer stores: ErpExternalKey.ErpKey is a
// String(254). ValidateKey counts runes.
const MaxKeyLength = 254

// KeyError says why an external key cannot be sent.
type KeyError struct {
	Index  int    // position in the key list; -1 when the key was validated on its own
	Key    string // the key, cut to 40 bytes
	Reason string // e.g. "empty", "longer than 254 characters"
}

func (e *KeyError) Error() string {
	s := "external key"
	if e.Index >= 0 {
		s += " #" + strconv.Itoa(e.Index)
	}
	return s + " " + strconv.Quote(e.Key) + ": " + e.Reason
}

// ValidateKey reports whether key can be sent as an external key: not blank, at most
// MaxKeyLength runes, valid UTF-8, and only characters XML 1.0 can carry (#x9 #xA #xD
// #x20-#xD7FF #xE000-#xFFFD #x10000-#x10FFFF). The error is a *KeyError with Index -1.
// It does not allocate for a valid key and is safe for concurrent use.
func ValidateKey(key string) error {
	if key == "" {
		return keyError(-1, key, "empty")
	}
	if strings.TrimSpace(key) == "" {
		return keyError(-1, key, "blank (only white space)")
	}
	n := 0
	for i := 0; i < len(key); {
		c := key[i]
		if c < utf8.RuneSelf {
			if c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
				return keyError(-1, key, "contains control character "+runeName(rune(c))+" at byte "+strconv.Itoa(i)+", which XML 1.0 cannot carry")
			}
			i++
			n++
			continue
		}
		r, size := utf8.DecodeRuneInString(key[i:])
		if r == utf8.RuneError && size == 1 {
			return keyError(-1, key, "not valid UTF-8 at byte "+strconv.Itoa(i))
		}
		if !IsXMLChar(r) {
			return keyError(-1, key, "contains "+runeName(r)+" at byte "+strconv.Itoa(i)+", which XML 1.0 cannot carry")
		}
		i += size
		n++
	}
	if n > MaxKeyLength {
		return keyError(-1, key, "longer than "+strconv.Itoa(MaxKeyLength)+" characters ("+strconv.Itoa(n)+")")
	}
	return nil
}

func keyError(index int, key, reason string) *KeyError {
	return &KeyError{Index: index, Key: Cut(key, 40), Reason: reason}
}

func runeName(r rune) string {
	s := strings.ToUpper(strconv.FormatInt(int64(r), 16))
	for len(s) < 4 {
		s = "0" + s
	}
	return "U+" + s
}

// IsXMLChar reports whether r is a Char in the XML 1.0 production: the characters an
// external key may hold.
func IsXMLChar(r rune) bool {
	switch {
	case r == 0x9 || r == 0xA || r == 0xD:
		return true
	case r >= 0x20 && r <= 0xD7FF:
		return true
	case r >= 0xE000 && r <= 0xFFFD:
		return true
	case r >= 0x10000 && r <= 0x10FFFF:
		return true
	}
	return false
}

// MaxConnectionID is the largest ERP connection id (an xs:int on the wire).
const MaxConnectionID = 1<<31 - 1

// ValidateRequest checks a ForceResyncExternal request before a transport sends it: the
// connection id in 0..MaxConnectionID, a valid actor type, and (unless all is set, which
// asks for "resync everything") a non-empty key list (ErrEmptyKeys) whose keys each pass
// ValidateKey (the *KeyError names the key's index). Both transports call it, so a bad
// request fails the same way whichever carries it.
func ValidateRequest(erpConnectionID int, actor ActorType, keys []string, all bool) error {
	if !all {
		if len(keys) == 0 {
			return ErrEmptyKeys
		}
		for i, k := range keys {
			if err := ValidateKey(k); err != nil {
				ke := err.(*KeyError)
				ke.Index = i
				return ke
			}
		}
	}
	if erpConnectionID < 0 || int64(erpConnectionID) > MaxConnectionID {
		return fmt.Errorf("ERP connection id %d out of range (0 to %d)", erpConnectionID, MaxConnectionID)
	}
	return actor.Validate()
}
