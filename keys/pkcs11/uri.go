package pkcs11

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
)

// Limits on untrusted input; real URIs are a few hundred bytes. With at most
// a dozen attributes of maxValueLen bytes, the canonical form of any URI
// ParseURI accepts (every byte percent-encoded at worst) is shorter than
// maxURILen, so it parses again.
const (
	maxURILen   = 64 << 10
	maxValueLen = 1 << 10
)

// maxPINFileSize bounds a pin-source file.
const maxPINFileSize = 1 << 10

// URI is a parsed PKCS#11 URI (RFC 7512) naming a token and a key on it.
//
// Only the attributes certctl uses are accepted; any other attribute is an
// error rather than being ignored, because an ignored selector would make the
// URI match more than its author meant (RFC 7512 §2.3 lets consumers refuse
// URIs they do not fully understand).
//
// The PIN (pin-value) is kept unexported: [URI.String], the fmt verbs and
// slog never show it. Only [URI.Unredacted] writes it out.
//
// A URI is a plain value: copy it freely; do not modify one that a Signer or
// Module is using.
type URI struct {
	// Path attributes: they select a token and an object.
	Token        string // token label (CKA_LABEL of the token, token=)
	Manufacturer string // token manufacturer ID (manufacturer=)
	Serial       string // token serial number (serial=)
	Model        string // token model (model=)
	SlotID       *uint  // slot-id=, decimal
	Object       string // object label, CKA_LABEL (object=)
	ID           []byte // object ID, CKA_ID (id=, usually percent-encoded bytes)
	Type         string // object class (type=): public, private, cert, secret-key or data

	// Query attributes: how to reach and log in to the token.
	ModulePath string // module-path=: the PKCS#11 library to load
	ModuleName string // module-name=: the library's name (certctl needs module-path)
	PINSource  string // pin-source=: file:PATH (or a plain path) holding the user PIN

	pinValue string // pin-value=: the user PIN itself. Never printed.
}

// ErrURI is wrapped by every ParseURI error.
var ErrURI = errors.New("pkcs11: invalid PKCS#11 URI")

var objectTypes = []string{"public", "private", "cert", "secret-key", "data"}

// ParseURI parses a PKCS#11 URI such as
//
//	pkcs11:token=ca-token;object=issuing-ca;id=%01?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/certctl/pin
//
// Attribute names are case-sensitive, values are percent-decoded, and each
// attribute may appear once. ParseURI is meant for untrusted input: it never
// panics, and its errors quote the offending attribute name, never a value
// (a value may be a PIN).
func ParseURI(s string) (*URI, error) {
	u, err := parseURI(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrURI, err)
	}
	return u, nil
}

func parseURI(s string) (*URI, error) {
	if len(s) > maxURILen {
		return nil, fmt.Errorf("longer than %d bytes", maxURILen)
	}
	const scheme = "pkcs11:"
	if len(s) < len(scheme) || !strings.EqualFold(s[:len(scheme)], scheme) {
		return nil, errors.New(`does not start with "pkcs11:"`)
	}
	s = s[len(scheme):]
	path, query, hasQuery := strings.Cut(s, "?")
	if strings.ContainsAny(path, "#") || strings.ContainsAny(query, "#") {
		return nil, errors.New(`a fragment ("#") is not allowed`)
	}
	u := &URI{}
	seen := map[string]bool{}
	if path != "" {
		err := eachAttr(path, ";", "path", isPathChar, seen, func(name, v string) error {
			switch name {
			case "token":
				u.Token = v
			case "manufacturer":
				u.Manufacturer = v
			case "serial":
				u.Serial = v
			case "model":
				u.Model = v
			case "object":
				u.Object = v
			case "id":
				u.ID = []byte(v)
			case "type":
				if !contains(objectTypes, v) {
					return fmt.Errorf(`attribute "type": must be one of %s`, strings.Join(objectTypes, ", "))
				}
				u.Type = v
			case "slot-id":
				n, err := parseDecimal(v)
				if err != nil {
					return fmt.Errorf(`attribute "slot-id": %v`, err)
				}
				u.SlotID = &n
			default:
				return fmt.Errorf("path attribute %q is not supported (supported: token, manufacturer, serial, model, slot-id, object, id, type)", name)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if hasQuery && query != "" {
		err := eachAttr(query, "&", "query", isQueryChar, seen, func(name, v string) error {
			switch name {
			case "module-path":
				u.ModulePath = v
			case "module-name":
				u.ModuleName = v
			case "pin-source":
				u.PINSource = v
			case "pin-value":
				u.pinValue = v
			default:
				return fmt.Errorf("query attribute %q is not supported (supported: module-path, module-name, pin-source, pin-value)", name)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	} else if hasQuery {
		return nil, errors.New(`empty query after "?"`)
	}
	if u.pinValue != "" && u.PINSource != "" {
		return nil, errors.New("both pin-value and pin-source are given: use one")
	}
	return u, nil
}

func splitAttr(attr, part string) (name, value string, err error) {
	name, value, ok := strings.Cut(attr, "=")
	if !ok || name == "" {
		if attr == "" {
			return "", "", fmt.Errorf("empty %s attribute (stray separator)", part)
		}
		return "", "", fmt.Errorf("%s attribute without \"=\" (want name=value)", part)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return "", "", fmt.Errorf("%s attribute name is not lowercase letters, digits and \"-\"", part)
		}
	}
	return name, value, nil
}

func parseDecimal(v string) (uint, error) {
	if v == "" || len(v) > 20 {
		return 0, errors.New("not a decimal number")
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, errors.New("not a decimal number")
		}
	}
	n, err := strconv.ParseUint(v, 10, strconv.IntSize)
	if err != nil {
		return 0, errors.New("out of range")
	}
	return uint(n), nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// RFC 7512 §2.3: pk11-pchar = unreserved / pk11-res-avail / pct-encoded, and
// the path also allows "&", the query "/", "?" and "|".
func isUnreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

func isResAvail(c byte) bool { return strings.IndexByte(":[]@!$'()*+,=", c) >= 0 }

func isPathChar(c byte) bool { return isUnreserved(c) || isResAvail(c) || c == '&' }
func isQueryChar(c byte) bool {
	return isUnreserved(c) || isResAvail(c) || c == '/' || c == '?' || c == '|'
}

func unescape(s string, allowed func(byte) bool) (string, error) {
	if !strings.Contains(s, "%") {
		for i := 0; i < len(s); i++ {
			if !allowed(s[i]) {
				return "", fmt.Errorf("character %q must be percent-encoded", s[i])
			}
		}
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return "", errors.New("bad percent-encoding")
			}
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
		case allowed(c):
			b.WriteByte(c)
		default:
			return "", fmt.Errorf("character %q must be percent-encoded", c)
		}
	}
	return b.String(), nil
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

const hexDigits = "0123456789ABCDEF"

func escape(b *strings.Builder, s string, allowed func(byte) bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if allowed(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
}

// encode writes the URI in canonical form: attributes in a fixed order, the
// id fully percent-encoded, other values encoded only where RFC 7512
// requires it.
func (u *URI) encode(withPIN bool) string {
	var b strings.Builder
	b.WriteString("pkcs11:")
	n := 0
	path := func(name, v string) {
		if n > 0 {
			b.WriteByte(';')
		}
		n++
		b.WriteString(name)
		b.WriteByte('=')
		escape(&b, v, isPathChar)
	}
	if u.Token != "" {
		path("token", u.Token)
	}
	if u.Manufacturer != "" {
		path("manufacturer", u.Manufacturer)
	}
	if u.Serial != "" {
		path("serial", u.Serial)
	}
	if u.Model != "" {
		path("model", u.Model)
	}
	if u.SlotID != nil {
		path("slot-id", strconv.FormatUint(uint64(*u.SlotID), 10))
	}
	if u.Object != "" {
		path("object", u.Object)
	}
	if len(u.ID) > 0 {
		if n > 0 {
			b.WriteByte(';')
		}
		n++
		b.WriteString("id=")
		escape(&b, string(u.ID), func(byte) bool { return false })
	}
	if u.Type != "" {
		path("type", u.Type)
	}
	q := 0
	query := func(name, v string) {
		if q == 0 {
			b.WriteByte('?')
		} else {
			b.WriteByte('&')
		}
		q++
		b.WriteString(name)
		b.WriteByte('=')
		escape(&b, v, isQueryChar)
	}
	if u.ModulePath != "" {
		query("module-path", u.ModulePath)
	}
	if u.ModuleName != "" {
		query("module-name", u.ModuleName)
	}
	if u.PINSource != "" {
		query("pin-source", u.PINSource)
	}
	if withPIN && u.pinValue != "" {
		query("pin-value", u.pinValue)
	}
	return b.String()
}

// String returns the URI without its pin-value (if it has one), for logs and
// error messages. Parsing it back gives the same URI minus the PIN.
func (u URI) String() string { return u.encode(false) }

// GoString is like String: %#v must not print the PIN either.
func (u URI) GoString() string { return "pkcs11.URI(" + strconv.Quote(u.encode(false)) + ")" }

// LogValue keeps the PIN out of slog output.
func (u URI) LogValue() slog.Value { return slog.StringValue(u.encode(false)) }

// Unredacted returns the URI including pin-value. Do not log it or put it on
// a command line (process listings show it).
func (u *URI) Unredacted() string { return u.encode(true) }

// HasPINValue reports whether the URI carries the PIN itself (pin-value).
func (u *URI) HasPINValue() bool { return u.pinValue != "" }

// WithoutPIN returns a copy of u without pin-value (pin-source is kept: it
// names where the PIN is, not the PIN).
func (u *URI) WithoutPIN() *URI {
	c := u.clone()
	c.pinValue = ""
	return c
}

func (u *URI) clone() *URI {
	c := *u
	if u.ID != nil {
		c.ID = append([]byte(nil), u.ID...)
	}
	if u.SlotID != nil {
		id := *u.SlotID
		c.SlotID = &id
	}
	return &c
}

// pin resolves the user PIN: pin-value, else the file named by pin-source,
// else fallback. ok is false when there is no PIN at all.
func (u *URI) pin(fallback string) (pin string, ok bool, err error) {
	switch {
	case u.pinValue != "":
		return u.pinValue, true, nil
	case u.PINSource != "":
		p, err := readPINFile(u.PINSource)
		if err != nil {
			return "", false, err
		}
		return p, true, nil
	case fallback != "":
		return fallback, true, nil
	}
	return "", false, nil
}

// readPINFile reads pin-source. RFC 7512 makes it a URI; certctl takes
// file:PATH, file:///PATH or a plain path. The PIN is the first line.
func readPINFile(src string) (string, error) {
	path := src
	if p, ok := strings.CutPrefix(src, "file://"); ok {
		if !strings.HasPrefix(p, "/") {
			return "", fmt.Errorf("pkcs11: pin-source %q: only file:PATH or file:///PATH is supported", src)
		}
		path = p
	} else if p, ok := strings.CutPrefix(src, "file:"); ok {
		path = p
	} else if i := strings.Index(src, ":"); i > 0 && !strings.ContainsAny(src[:i], "/.") {
		return "", fmt.Errorf("pkcs11: pin-source %q: only file: sources are supported", src)
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("pkcs11: pin-source: %w", err)
	}
	defer f.Close()
	buf, err := io.ReadAll(io.LimitReader(f, maxPINFileSize+1))
	if err != nil {
		return "", fmt.Errorf("pkcs11: pin-source: %w", err)
	}
	if len(buf) > maxPINFileSize {
		return "", fmt.Errorf("pkcs11: pin-source %s: larger than %d bytes", path, maxPINFileSize)
	}
	line, _, _ := strings.Cut(string(buf), "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return "", fmt.Errorf("pkcs11: pin-source %s: file is empty", path)
	}
	return line, nil
}

// eachAttr splits one component of a PKCS#11 URI (the path at ";" or the
// query at "&") into attributes, rejects repeated, over-long and empty
// ones, unescapes each value with the component's character set, and
// hands it to set.
func eachAttr(component, sep, kind string, isChar func(byte) bool, seen map[string]bool, set func(name, v string) error) error {
	for _, attr := range strings.Split(component, sep) {
		name, raw, err := splitAttr(attr, kind)
		if err != nil {
			return err
		}
		if seen[name] {
			return fmt.Errorf("attribute %q given twice", name)
		}
		seen[name] = true
		v, err := unescape(raw, isChar)
		if err != nil {
			return fmt.Errorf("attribute %q: %v", name, err)
		}
		if len(v) > maxValueLen {
			return fmt.Errorf("attribute %q: longer than %d bytes", name, maxValueLen)
		}
		if v == "" {
			return fmt.Errorf("attribute %q: empty value", name)
		}
		if err := set(name, v); err != nil {
			return err
		}
	}
	return nil
}
