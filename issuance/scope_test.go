package issuance

import (
	"errors"
	"testing"
)

func TestNameScope(t *testing.T) {
	scope, err := NewNameScope([]string{"*.svc.internal", "10.0.0.0/8", "spiffe://prod.internal/**", "*@ops.internal", "app"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		cn    string
		names []string
		field string // "" = allowed
	}{
		{"dns in scope", "a.svc.internal", []string{"a.svc.internal"}, ""},
		{"dns two labels deep", "", []string{"a.b.svc.internal"}, "dns_names[0]"},
		{"dns outside", "", []string{"a.svc.internal", "evil.example.com"}, "dns_names[1]"},
		{"ip in range", "", []string{"10.1.2.3"}, ""},
		{"ip outside", "", []string{"192.168.1.1"}, "ip_addresses[0]"},
		{"uri in scope", "", []string{"spiffe://prod.internal/ns/a/sa/b"}, ""},
		{"uri outside", "", []string{"spiffe://dev.internal/x"}, "uris[0]"},
		{"email", "", []string{"bob@ops.internal"}, ""},
		{"email outside", "", []string{"bob@dev.internal"}, "email_addresses[0]"},
		{"cn role in scope", "app", nil, ""},
		{"cn role outside", "postgres", nil, "common_name"},
		{"cn equals a san", "a.svc.internal", []string{"a.svc.internal"}, ""},
		{"no names", "", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := &Request{}
			req.Subject.CommonName = tt.cn
			if err := req.AddNames(tt.names...); err != nil {
				t.Fatal(err)
			}
			err := scope.Check("server", req)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Check() = %v, want allowed", err)
				}
				return
			}
			var pe *PolicyError
			if !errors.As(err, &pe) || pe.Field != tt.field {
				t.Fatalf("Check() = %v, want PolicyError on %s", err, tt.field)
			}
		})
	}
}

func TestNewNameScopeRejects(t *testing.T) {
	for _, bad := range []string{"", "a.*b.internal", "**.**.internal", "10.0.0.0/33", "bad@", "spiffe://x/**/**"} {
		if _, err := NewNameScope([]string{bad}); err == nil {
			t.Errorf("NewNameScope(%q) accepted", bad)
		}
	}
}
