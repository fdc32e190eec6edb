package main

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCFSSLOptions(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "k.hex"), []byte("00112233445566778899aabbccddeeff\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"CFSSL_KEY": "ffeeddccbbaa99887766554433221100"}
	c := &common{dir: dir, getenv: func(k string) string { return env[k] }}
	tests := []struct {
		name    string
		keys    map[string]string
		want    map[string]string // hex
		wantErr string
	}{
		{"hex", map[string]string{"a": "0123456789abcdef0123456789abcdef"}, map[string]string{"a": "0123456789abcdef0123456789abcdef"}, ""},
		{"env", map[string]string{"a": "env:CFSSL_KEY"}, map[string]string{"a": "ffeeddccbbaa99887766554433221100"}, ""},
		{"file relative to dir", map[string]string{"a": "file:k.hex"}, map[string]string{"a": "00112233445566778899aabbccddeeff"}, ""},
		{"empty env", map[string]string{"a": "env:NOPE"}, nil, "NOPE is empty"},
		{"missing file", map[string]string{"a": "file:nope.hex"}, nil, "cfssl.auth_keys.a"},
		{"not hex", map[string]string{"a": "zz"}, nil, "not hex"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &Config{CFSSL: CFSSLConfig{AuthKeys: tt.keys, DefaultProfile: "server"}}
			opts, err := cfsslOptions(c, cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("cfsslOptions() error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for name, hexKey := range tt.want {
				if got := opts.AuthKeys[name]; !bytes.Equal(got, mustHex(t, hexKey)) {
					t.Fatalf("key %s = %x, want %s", name, got, hexKey)
				}
			}
			if opts.DefaultProfile != "server" {
				t.Fatalf("default profile %q", opts.DefaultProfile)
			}
		})
	}
}

func mustHex(t *testing.T, s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
