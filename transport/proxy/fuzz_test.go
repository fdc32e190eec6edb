package proxy

import (
	"bytes"
	"io"
	"net"
	"testing"
)

// bytesConn is a net.Conn that reads from a buffer.
type bytesConn struct {
	net.Conn
	r io.Reader
}

func (c *bytesConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// FuzzReadResponse: readResponse never panics, reads at most
// MaxResponseHeader bytes of head, and on success the tunnel yields
// exactly the bytes after the head, which ends with a blank line.
func FuzzReadResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 Connection established\r\n\r\n",
		"HTTP/1.0 200 OK\r\nProxy-Agent: tinyproxy/1.11.1\r\n\r\nEARLY DATA",
		"HTTP/1.1 200 OK\nContent-Length: 5\n\nhello",
		"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"x\"\r\nContent-Length: 3\r\n\r\nno\n",
		"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
		"HTTP/2 200\r\n\r\n",
		"\x16\x03\x01\x00\x05hello",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		conn, err := readResponse(&bytesConn{r: bytes.NewReader(in)}, "proxy:1", "target:2")
		if err != nil {
			return
		}
		rest, _ := io.ReadAll(conn)
		if !bytes.HasSuffix(in, rest) {
			t.Fatalf("tunnel bytes %q are not the end of the input", rest)
		}
		head := in[:len(in)-len(rest)]
		if len(head) > MaxResponseHeader {
			t.Fatalf("head of %d bytes accepted", len(head))
		}
		if !bytes.HasSuffix(head, []byte("\n\n")) && !bytes.HasSuffix(head, []byte("\n\r\n")) {
			t.Fatalf("head %q does not end with a blank line", head)
		}
	})
}
