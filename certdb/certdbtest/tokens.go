package certdbtest

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/certctl/certctl/certdb"
)

// NewToken returns a token record the way `certctl token create` makes one:
// the SHA-256 of a fresh random secret, allowed to issue "server"
// certificates for *.example.test, expiring a day from now. CreatedAt is left
// for the store to set.
func NewToken(id string) *certdb.Token {
	secret := make([]byte, 32)
	rand.Read(secret) // crypto/rand: cannot fail since Go 1.24
	h := sha256.Sum256(secret)
	return &certdb.Token{
		ID:          id,
		Hash:        h[:],
		Profiles:    []string{"server"},
		Names:       []string{"*.example.test"},
		Description: "certdbtest token " + id,
		CreatedBy:   "cli:certdbtest",
		ExpiresAt:   time.Now().Add(24 * time.Hour).UTC().Truncate(time.Microsecond),
	}
}

func withTokens(fn func(*testing.T, certdb.TokenStore)) func(*testing.T, certdb.Store) {
	return func(t *testing.T, s certdb.Store) {
		ts, ok := s.(certdb.TokenStore)
		if !ok {
			t.Fatalf("certdbtest: %T does not implement certdb.TokenStore", s)
		}
		fn(t, ts)
	}
}

func withAudit(fn func(*testing.T, certdb.AuditStore)) func(*testing.T, certdb.Store) {
	return func(t *testing.T, s certdb.Store) {
		as, ok := s.(certdb.AuditStore)
		if !ok {
			t.Fatalf("certdbtest: %T does not implement certdb.AuditStore", s)
		}
		fn(t, as)
	}
}

type tokenAuditStore interface {
	certdb.TokenStore
	certdb.AuditStore
}

func withTokenAudit(fn func(*testing.T, tokenAuditStore)) func(*testing.T, certdb.Store) {
	return func(t *testing.T, s certdb.Store) {
		ts, ok := s.(tokenAuditStore)
		if !ok {
			t.Fatalf("certdbtest: %T does not implement both certdb.TokenStore and certdb.AuditStore", s)
		}
		fn(t, ts)
	}
}

// diffTime compares a time read back from a store with the one sent: equal
// to the microsecond, in UTC, without sub-microsecond digits. A zero sent
// time must come back zero.
func diffTime(field string, got, sent time.Time) []string {
	switch {
	case sent.IsZero() && got.IsZero():
		return nil
	case sent.IsZero():
		return []string{fmt.Sprintf("%s = %v, want zero time", field, got)}
	case got.IsZero():
		return []string{fmt.Sprintf("%s is zero, want %v", field, sent)}
	case got.Sub(sent).Abs() >= time.Microsecond:
		return []string{fmt.Sprintf("%s = %v, want %v", field, got, sent)}
	case got.Location() != time.UTC:
		return []string{fmt.Sprintf("%s.Location() = %v, want UTC", field, got.Location())}
	case got.Nanosecond()%1000 != 0:
		return []string{fmt.Sprintf("%s = %v has sub-microsecond digits", field, got)}
	}
	return nil
}

// diffToken lists the differences between a stored token and what it should
// be. want.CreatedAt is compared only when set.
func diffToken(got, want *certdb.Token) []string {
	var d []string
	add := func(field string, g, w any) { d = append(d, fmt.Sprintf("%s = %v, want %v", field, g, w)) }
	if got.ID != want.ID {
		add("ID", fmt.Sprintf("%q", got.ID), fmt.Sprintf("%q", want.ID))
	}
	if !bytes.Equal(got.Hash, want.Hash) {
		add("Hash", fmt.Sprintf("%x", got.Hash), fmt.Sprintf("%x", want.Hash))
	}
	if !slices.Equal(got.Profiles, want.Profiles) { // nil and empty are equal
		add("Profiles", fmt.Sprintf("%q", got.Profiles), fmt.Sprintf("%q", want.Profiles))
	}
	if !slices.Equal(got.Names, want.Names) {
		add("Names", fmt.Sprintf("%q", got.Names), fmt.Sprintf("%q", want.Names))
	}
	if got.SingleUse != want.SingleUse {
		add("SingleUse", got.SingleUse, want.SingleUse)
	}
	if got.Admin != want.Admin {
		add("Admin", got.Admin, want.Admin)
	}
	if got.Description != want.Description {
		add("Description", fmt.Sprintf("%q", got.Description), fmt.Sprintf("%q", want.Description))
	}
	if got.CreatedBy != want.CreatedBy {
		add("CreatedBy", fmt.Sprintf("%q", got.CreatedBy), fmt.Sprintf("%q", want.CreatedBy))
	}
	if !want.CreatedAt.IsZero() {
		d = append(d, diffTime("CreatedAt", got.CreatedAt, want.CreatedAt)...)
	}
	d = append(d, diffTime("ExpiresAt", got.ExpiresAt, want.ExpiresAt)...)
	d = append(d, diffTime("UsedAt", got.UsedAt, want.UsedAt)...)
	d = append(d, diffTime("RevokedAt", got.RevokedAt, want.RevokedAt)...)
	return d
}

func checkToken(t *testing.T, what string, got, want *certdb.Token) {
	t.Helper()
	for _, d := range diffToken(got, want) {
		t.Errorf("%s: token %q: %s", what, want.ID, d)
	}
}

func mustCreateToken(t *testing.T, s certdb.TokenStore, tok *certdb.Token) {
	t.Helper()
	if err := s.CreateToken(t.Context(), tok); err != nil {
		t.Fatalf("CreateToken(%q) error = %v", tok.ID, err)
	}
}

func mustGetToken(t *testing.T, s certdb.TokenStore, id string) *certdb.Token {
	t.Helper()
	tok, err := s.GetToken(t.Context(), id)
	if err != nil {
		t.Fatalf("GetToken(%q) error = %v", id, err)
	}
	if tok == nil {
		t.Fatalf("GetToken(%q) = nil, nil", id)
	}
	return tok
}

func testTokenRoundTrip(t *testing.T, s certdb.TokenStore) {
	now := refNow() // not UTC, with nanoseconds: must come back UTC, to the microsecond
	zeroHash := make([]byte, 32)
	tests := []struct {
		name string
		tok  certdb.Token
	}{
		{"every field", certdb.Token{
			ID:          "tok_0123456789abcdef",
			Hash:        bytes.Repeat([]byte{0xa5, 0x5a}, 16),
			Profiles:    []string{"server", "client", "spiffe-workload"},
			Names:       []string{"*.example.test", "svc-{a,b}.example.test", `quote"comma,brace{}\backslash`, "é.example.test", "NULL"},
			Admin:       true,
			Description: "deploy bot, rotation « 2031 »\nsecond line",
			CreatedBy:   "mtls:0a0b0c",
			CreatedAt:   now,
			ExpiresAt:   now.Add(90*24*time.Hour + 123456789*time.Nanosecond),
		}},
		{"single use, no lists", certdb.Token{
			ID:        "tok-single",
			Hash:      bytes.Repeat([]byte{0xff}, 32),
			SingleUse: true,
			CreatedAt: now.Add(-time.Hour),
			ExpiresAt: now.Add(time.Hour),
		}},
		{"empty lists", certdb.Token{
			ID:        "tok-empty-lists",
			Hash:      bytes.Repeat([]byte{0x01}, 32),
			Profiles:  []string{},
			Names:     []string{},
			CreatedAt: now,
			ExpiresAt: now.Add(time.Minute),
		}},
		{"hash of zero octets", certdb.Token{ // a C-string API would store it empty
			ID:        "tok-zero-hash",
			Hash:      zeroHash,
			Profiles:  []string{""},
			CreatedAt: now,
			ExpiresAt: now.Add(time.Minute),
		}},
		{"used and revoked at creation", certdb.Token{
			ID:        "tok-imported",
			Hash:      bytes.Repeat([]byte{0x02}, 32),
			SingleUse: true,
			CreatedAt: now.Add(-48 * time.Hour),
			ExpiresAt: now.Add(-time.Hour), // already expired: the store does not care
			UsedAt:    now.Add(-47 * time.Hour),
			RevokedAt: now.Add(-46*time.Hour + time.Nanosecond),
		}},
		{"unicode ID", certdb.Token{
			ID:        "jeton-é-✓",
			Hash:      bytes.Repeat([]byte{0x03}, 32),
			CreatedAt: now,
			ExpiresAt: now.Add(time.Minute),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := tt.tok
			sent := tt.tok
			mustCreateToken(t, s, &tok)
			if !tok.CreatedAt.Equal(sent.CreatedAt) || tok.CreatedAt.Location() != sent.CreatedAt.Location() {
				t.Errorf("CreateToken changed the caller's CreatedAt %v to %v", sent.CreatedAt, tok.CreatedAt)
			}
			checkToken(t, "GetToken", mustGetToken(t, s, tok.ID), &sent)

			list, err := s.ListTokens(t.Context())
			if err != nil {
				t.Fatalf("ListTokens() error = %v", err)
			}
			i := slices.IndexFunc(list, func(l *certdb.Token) bool { return l.ID == tok.ID })
			if i < 0 {
				t.Fatalf("ListTokens() does not list %q", tok.ID)
			}
			checkToken(t, "ListTokens", list[i], &sent)
		})
	}
}

func testTokenCreatedAtDefault(t *testing.T, s certdb.TokenStore) {
	tok := NewToken("tok-default-created")
	mustCreateToken(t, s, tok)
	switch {
	case tok.CreatedAt.IsZero():
		t.Fatalf("CreateToken left CreatedAt zero; the store must set it in the caller's Token")
	case tok.CreatedAt.Location() != time.UTC:
		t.Errorf("CreatedAt.Location() = %v, want UTC", tok.CreatedAt.Location())
	case tok.CreatedAt.Nanosecond()%1000 != 0:
		t.Errorf("CreatedAt = %v has sub-microsecond digits", tok.CreatedAt)
	}
	// Catches unit mix-ups (seconds stored as microseconds); not a timing assertion.
	if d := time.Since(tok.CreatedAt).Abs(); d > 24*time.Hour {
		t.Errorf("CreatedAt = %v is %v away from the wall clock", tok.CreatedAt, d)
	}
	got := mustGetToken(t, s, tok.ID)
	if !got.CreatedAt.Equal(tok.CreatedAt) {
		t.Errorf("stored CreatedAt = %v, CreateToken set %v in the caller's Token", got.CreatedAt, tok.CreatedAt)
	}
	checkToken(t, "GetToken", got, tok)
}

func testTokenDuplicate(t *testing.T, s certdb.TokenStore) {
	ctx := t.Context()
	first := NewToken("tok-dup")
	first.CreatedAt = refNow()
	mustCreateToken(t, s, first)

	second := NewToken("tok-dup")
	second.Admin, second.Profiles = true, []string{"everything"}
	if err := s.CreateToken(ctx, second); !errors.Is(err, certdb.ErrDuplicate) {
		t.Fatalf("CreateToken(same ID) error = %v, want ErrDuplicate", err)
	}
	checkToken(t, "after the duplicate", mustGetToken(t, s, "tok-dup"), first)

	// IDs are compared exactly: case and spaces make a different token.
	for _, id := range []string{"TOK-DUP", "tok-dup ", " tok-dup"} {
		other := NewToken(id)
		if err := s.CreateToken(ctx, other); err != nil {
			t.Errorf("CreateToken(%q) error = %v, want nil (IDs are case- and space-sensitive)", id, err)
		}
	}
	list, err := s.ListTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 4 {
		t.Fatalf("ListTokens() returned %d tokens, want 4", len(list))
	}
}

func testTokenUnknown(t *testing.T, s certdb.TokenStore) {
	ctx := t.Context()
	mustCreateToken(t, s, NewToken("tok-known"))
	at := refNow()
	for _, id := range []string{"tok-unknown", "", "TOK-KNOWN", "tok-known ", "tok-know", "tok-known%", "tok-%"} {
		t.Run(fmt.Sprintf("%q", id), func(t *testing.T) {
			if _, err := s.GetToken(ctx, id); !errors.Is(err, certdb.ErrNotFound) {
				t.Errorf("GetToken() error = %v, want ErrNotFound", err)
			}
			if err := s.UseToken(ctx, id, at); !errors.Is(err, certdb.ErrNotFound) {
				t.Errorf("UseToken() error = %v, want ErrNotFound", err)
			}
			if err := s.RevokeToken(ctx, id, at); !errors.Is(err, certdb.ErrNotFound) {
				t.Errorf("RevokeToken() error = %v, want ErrNotFound", err)
			}
		})
	}
	if got := mustGetToken(t, s, "tok-known"); !got.UsedAt.IsZero() || !got.RevokedAt.IsZero() {
		t.Errorf("calls on other IDs changed tok-known: UsedAt %v, RevokedAt %v", got.UsedAt, got.RevokedAt)
	}
}

func testTokenUseSingle(t *testing.T, s certdb.TokenStore) {
	ctx := t.Context()
	at := refNow()
	tok := NewToken("tok-once")
	tok.SingleUse = true
	tok.ExpiresAt = at.Add(-time.Hour) // expired at the time of use: the store leaves expiry to the caller
	mustCreateToken(t, s, tok)
	other := NewToken("tok-once-other")
	other.SingleUse = true
	mustCreateToken(t, s, other)

	if err := s.UseToken(ctx, tok.ID, at); err != nil {
		t.Fatalf("first UseToken() error = %v (the store must not check ExpiresAt)", err)
	}
	want := *tok
	want.UsedAt = at
	checkToken(t, "after the first use", mustGetToken(t, s, tok.ID), &want)

	for i, later := range []time.Time{at.Add(time.Second), at, at.Add(-time.Second)} {
		if err := s.UseToken(ctx, tok.ID, later); !errors.Is(err, certdb.ErrTokenUsed) {
			t.Fatalf("UseToken() #%d error = %v, want ErrTokenUsed", i+2, err)
		}
	}
	checkToken(t, "after refused uses", mustGetToken(t, s, tok.ID), &want)
	checkToken(t, "the other token", mustGetToken(t, s, other.ID), other)
}

func testTokenUseMulti(t *testing.T, s certdb.TokenStore) {
	ctx := t.Context()
	t1 := refNow()
	t2, t3 := t1.Add(time.Minute), t1.Add(2*time.Minute)
	tok := NewToken("tok-many")
	mustCreateToken(t, s, tok)
	want := *tok
	for _, step := range []struct {
		at, want time.Time
	}{
		{t1, t1},
		{t3, t3},
		{t2, t3}, // an older use does not move UsedAt back
		{t3, t3},
		{t3.Add(time.Nanosecond), t3},
		{t3.Add(time.Microsecond), t3.Add(time.Microsecond)},
	} {
		if err := s.UseToken(ctx, tok.ID, step.at); err != nil {
			t.Fatalf("UseToken(%v) error = %v", step.at, err)
		}
		want.UsedAt = step.want
		checkToken(t, fmt.Sprintf("after a use at %v", step.at), mustGetToken(t, s, tok.ID), &want)
	}
}

// Race runs op in n goroutines released at once and returns their errors.
func Race(n int, op func(i int) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = op(i)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// OneWinner checks that exactly one error is nil and every other one is
// loser, and returns the index of the winner.
func OneWinner(t *testing.T, what string, errs []error, loser error) int {
	t.Helper()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner < 0:
			winner = i
		case err == nil:
			t.Errorf("%s: goroutines %d and %d both succeeded", what, winner, i)
		case !errors.Is(err, loser):
			t.Errorf("%s in goroutine %d: %v, want nil or %v", what, i, err, loser)
		}
	}
	if winner < 0 {
		t.Fatalf("%s: no goroutine succeeded", what)
	}
	return winner
}

func testTokenUseSingleRace(t *testing.T, s certdb.TokenStore) {
	ctx := t.Context()
	base := refNow()
	const n = 16
	at := func(i int) time.Time { return base.Add(time.Duration(i) * time.Millisecond) }

	t.Run("single use", func(t *testing.T) {
		for round := range 3 {
			tok := NewToken(fmt.Sprintf("tok-race-%d", round))
			tok.SingleUse = true
			mustCreateToken(t, s, tok)
			errs := Race(n, func(i int) error { return s.UseToken(ctx, tok.ID, at(i)) })
			winner := OneWinner(t, "UseToken", errs, certdb.ErrTokenUsed)
			want := *tok
			want.UsedAt = at(winner)
			checkToken(t, "after the race", mustGetToken(t, s, tok.ID), &want)
		}
	})
	t.Run("multi use", func(t *testing.T) {
		tok := NewToken("tok-race-many")
		mustCreateToken(t, s, tok)
		errs := Race(n, func(i int) error { return s.UseToken(ctx, tok.ID, at(i)) })
		for i, err := range errs {
			if err != nil {
				t.Errorf("UseToken in goroutine %d: %v", i, err)
			}
		}
		want := *tok
		want.UsedAt = at(n - 1) // the latest use, whatever order they ran in
		checkToken(t, "after concurrent uses", mustGetToken(t, s, tok.ID), &want)
	})
}

func testTokenRevoke(t *testing.T, s certdb.TokenStore) {
	ctx := t.Context()
	now := refNow()
	bystander := NewToken("tok-bystander")
	mustCreateToken(t, s, bystander)

	tests := []struct {
		name      string
		singleUse bool
		usedFirst bool
	}{
		{"multi use", false, false},
		{"multi use, used", false, true},
		{"single use, unused", true, false},
		{"single use, used", true, true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := NewToken(fmt.Sprintf("tok-revoke-%d", i))
			tok.SingleUse = tt.singleUse
			mustCreateToken(t, s, tok)
			want := *tok
			if tt.usedFirst {
				if err := s.UseToken(ctx, tok.ID, now.Add(-time.Minute)); err != nil {
					t.Fatal(err)
				}
				want.UsedAt = now.Add(-time.Minute)
			}
			if err := s.RevokeToken(ctx, tok.ID, now); err != nil {
				t.Fatalf("RevokeToken() error = %v", err)
			}
			want.RevokedAt = now
			checkToken(t, "after RevokeToken", mustGetToken(t, s, tok.ID), &want)

			if err := s.RevokeToken(ctx, tok.ID, now.Add(time.Hour)); !errors.Is(err, certdb.ErrTokenRevoked) {
				t.Errorf("second RevokeToken() error = %v, want ErrTokenRevoked", err)
			}
			// Revoked wins over used: the caller learns the token is revoked.
			if err := s.UseToken(ctx, tok.ID, now.Add(time.Minute)); !errors.Is(err, certdb.ErrTokenRevoked) {
				t.Errorf("UseToken() after RevokeToken error = %v, want ErrTokenRevoked", err)
			}
			checkToken(t, "after refused calls", mustGetToken(t, s, tok.ID), &want)
		})
	}
	checkToken(t, "the bystander", mustGetToken(t, s, bystander.ID), bystander)
}

func testTokenRevokeRace(t *testing.T, s certdb.TokenStore) {
	ctx := t.Context()
	base := refNow()
	tok := NewToken("tok-revoke-race")
	mustCreateToken(t, s, tok)
	at := func(i int) time.Time { return base.Add(time.Duration(i) * time.Second) }
	errs := Race(8, func(i int) error { return s.RevokeToken(ctx, tok.ID, at(i)) })
	winner := OneWinner(t, "RevokeToken", errs, certdb.ErrTokenRevoked)
	want := *tok
	want.RevokedAt = at(winner)
	checkToken(t, "after the race", mustGetToken(t, s, tok.ID), &want)
}

func testTokenList(t *testing.T, s certdb.TokenStore) {
	ctx := t.Context()
	list, err := s.ListTokens(ctx)
	if err != nil {
		t.Fatalf("ListTokens() on an empty store error = %v", err)
	}
	if len(list) != 0 {
		t.Fatalf("ListTokens() on an empty store returned %d tokens", len(list))
	}

	t0 := refNow()
	byID := map[string]*certdb.Token{}
	for _, c := range []struct {
		id      string
		created time.Time
	}{
		{"old", t0},
		{"newest", t0.Add(2 * time.Hour)},
		{"mid-b", t0.Add(time.Hour)},
		{"mid-a", t0.Add(time.Hour)},
		{"mid-c", t0.Add(time.Hour)},
		{"oldest", t0.Add(-365 * 24 * time.Hour)},
		{"new", t0.Add(time.Hour + time.Microsecond)},
	} {
		tok := NewToken(c.id)
		tok.CreatedAt = c.created
		mustCreateToken(t, s, tok)
		byID[c.id] = tok
	}
	// A used and a revoked token are listed like the others.
	if err := s.UseToken(ctx, "old", t0); err != nil {
		t.Fatal(err)
	}
	byID["old"].UsedAt = t0
	if err := s.RevokeToken(ctx, "mid-b", t0); err != nil {
		t.Fatal(err)
	}
	byID["mid-b"].RevokedAt = t0

	list, err = s.ListTokens(ctx)
	if err != nil {
		t.Fatalf("ListTokens() error = %v", err)
	}
	want := []string{"newest", "new", "mid-a", "mid-b", "mid-c", "old", "oldest"}
	got := make([]string, len(list))
	for i, tok := range list {
		got[i] = tok.ID
	}
	if !slices.Equal(got, want) {
		t.Fatalf("ListTokens() order = %q, want %q (CreatedAt descending, then ID)", got, want)
	}
	for _, tok := range list {
		checkToken(t, "ListTokens", tok, byID[tok.ID])
	}
}

// diffAudit lists the differences between a stored event and the one
// appended (whose ID the store set).
func diffAudit(got, want *certdb.AuditEvent) []string {
	var d []string
	add := func(field string, g, w any) { d = append(d, fmt.Sprintf("%s = %q, want %q", field, g, w)) }
	if got.ID != want.ID {
		d = append(d, fmt.Sprintf("ID = %d, want %d", got.ID, want.ID))
	}
	d = append(d, diffTime("Time", got.Time, want.Time)...)
	if got.Actor != want.Actor {
		add("Actor", got.Actor, want.Actor)
	}
	if got.Action != want.Action {
		add("Action", got.Action, want.Action)
	}
	if got.Target != want.Target {
		add("Target", got.Target, want.Target)
	}
	if got.Outcome != want.Outcome {
		add("Outcome", got.Outcome, want.Outcome)
	}
	if got.Detail != want.Detail {
		add("Detail", got.Detail, want.Detail)
	}
	return d
}

func mustAppend(t *testing.T, s certdb.AuditStore, e *certdb.AuditEvent) {
	t.Helper()
	if err := s.AppendAudit(t.Context(), e); err != nil {
		t.Fatalf("AppendAudit(%s by %s) error = %v", e.Action, e.Actor, err)
	}
}

func mustListAudit(t *testing.T, s certdb.AuditStore, q certdb.AuditQuery) []*certdb.AuditEvent {
	t.Helper()
	got, err := s.ListAudit(t.Context(), q)
	if err != nil {
		t.Fatalf("ListAudit(%+v) error = %v", q, err)
	}
	return got
}

func testAuditRoundTrip(t *testing.T, s certdb.AuditStore) {
	if got := mustListAudit(t, s, certdb.AuditQuery{}); len(got) != 0 {
		t.Fatalf("ListAudit() on an empty store returned %d events", len(got))
	}
	now := refNow()
	events := []*certdb.AuditEvent{
		// Times out of order: the list is ordered by ID, not by Time.
		{Time: now.Add(time.Hour), Actor: "token:tok_0123", Action: "issue", Target: "7f0102", Outcome: "ok",
			Detail: `profile "server", names [a.example.test é.example.test]`},
		{Time: now, Actor: "mtls:0a0b0c", Action: "revoke", Target: "7f0102", Outcome: "denied", Detail: "not the owner\nsecond line"},
		{Time: now.Add(-24 * time.Hour), Actor: "cli:root", Action: "token.create", Target: "tok_0123", Outcome: "ok"},
		{Actor: "hmac:key1", Action: "token.use", Target: "tok_0123", Outcome: "error", Detail: "store unavailable"}, // Time set by the store
		{Time: now, Action: "renew"}, // every other field empty
	}
	sent := make([]certdb.AuditEvent, len(events))
	for i, e := range events {
		sent[i] = *e
		mustAppend(t, s, e)
		if e.ID <= 0 {
			t.Fatalf("AppendAudit set ID = %d, want a positive ID", e.ID)
		}
		if i > 0 && e.ID <= events[i-1].ID {
			t.Fatalf("AppendAudit #%d set ID %d after %d: IDs must increase", i, e.ID, events[i-1].ID)
		}
	}
	// The store set the time of the event that had none, in the caller's struct.
	stamped := events[3].Time
	switch {
	case stamped.IsZero():
		t.Fatalf("AppendAudit left Time zero; the store must set it in the caller's event")
	case stamped.Location() != time.UTC || stamped.Nanosecond()%1000 != 0:
		t.Errorf("store-set Time = %v, want UTC at microsecond precision", stamped)
	}
	if d := time.Since(stamped).Abs(); d > 24*time.Hour {
		t.Errorf("store-set Time = %v is %v away from the wall clock", stamped, d)
	}
	sent[3].Time = stamped

	got := mustListAudit(t, s, certdb.AuditQuery{})
	if len(got) != len(events) {
		t.Fatalf("ListAudit() returned %d events, want %d", len(got), len(events))
	}
	for i, g := range got {
		w := sent[len(sent)-1-i] // newest first
		w.ID = events[len(events)-1-i].ID
		for _, d := range diffAudit(g, &w) {
			t.Errorf("ListAudit()[%d]: %s", i, d)
		}
	}
}

func testAuditFilters(t *testing.T, s certdb.AuditStore) {
	base := refNow()
	fixtures := []struct {
		name, actor, action string
		at                  time.Duration
	}{
		{"a", "token:a", "issue", -3 * time.Hour},
		{"b", "token:b", "issue", -2 * time.Hour},
		{"c", "token:a", "revoke", -time.Hour},
		{"d", "cli:root", "token.create", 0},
		{"e", "token:a", "issue", time.Hour},
		{"f", "token:b", "revoke", 2 * time.Hour},
	}
	ids := map[string]int64{}
	names := map[int64]string{}
	for _, f := range fixtures {
		e := &certdb.AuditEvent{Time: base.Add(f.at), Actor: f.actor, Action: f.action, Target: "t-" + f.name, Outcome: "ok", Detail: f.name}
		mustAppend(t, s, e)
		ids[f.name], names[e.ID] = e.ID, f.name
	}
	tests := []struct {
		name string
		q    certdb.AuditQuery
		want []string
	}{
		{"all", certdb.AuditQuery{}, []string{"f", "e", "d", "c", "b", "a"}},
		{"actor", certdb.AuditQuery{Actor: "token:a"}, []string{"e", "c", "a"}},
		{"actor is exact", certdb.AuditQuery{Actor: "TOKEN:A"}, nil},
		{"actor prefix is not a match", certdb.AuditQuery{Actor: "token:"}, nil},
		{"unknown actor", certdb.AuditQuery{Actor: "token:zzz"}, nil},
		{"action", certdb.AuditQuery{Action: "issue"}, []string{"e", "b", "a"}},
		{"actor and action", certdb.AuditQuery{Actor: "token:a", Action: "issue"}, []string{"e", "a"}},
		{"since is inclusive", certdb.AuditQuery{Since: base}, []string{"f", "e", "d"}},
		{"since in UTC", certdb.AuditQuery{Since: base.UTC()}, []string{"f", "e", "d"}},
		{"since just after", certdb.AuditQuery{Since: base.Add(time.Microsecond)}, []string{"f", "e"}},
		{"since before all", certdb.AuditQuery{Since: base.Add(-24 * time.Hour)}, []string{"f", "e", "d", "c", "b", "a"}},
		{"since after all", certdb.AuditQuery{Since: base.Add(24 * time.Hour)}, nil},
		{"action since", certdb.AuditQuery{Action: "revoke", Since: base.Add(-time.Hour)}, []string{"f", "c"}},
		{"before", certdb.AuditQuery{Before: ids["d"]}, []string{"c", "b", "a"}},
		{"before the first", certdb.AuditQuery{Before: ids["a"]}, nil},
		{"before beyond the last", certdb.AuditQuery{Before: ids["f"] + 1000}, []string{"f", "e", "d", "c", "b", "a"}},
		{"before and actor", certdb.AuditQuery{Before: ids["e"], Actor: "token:a"}, []string{"c", "a"}},
		{"everything", certdb.AuditQuery{Before: ids["f"], Actor: "token:a", Action: "issue", Since: base.Add(-2 * time.Hour)}, []string{"e"}},
		{"limit", certdb.AuditQuery{Limit: 2}, []string{"f", "e"}},
		{"limit and action", certdb.AuditQuery{Action: "issue", Limit: 2}, []string{"e", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustListAudit(t, s, tt.q)
			gotNames := make([]string, len(got))
			for i, e := range got {
				gotNames[i] = names[e.ID]
				if e.Detail != gotNames[i] {
					t.Errorf("event %d has Detail %q, want %q", e.ID, e.Detail, gotNames[i])
				}
			}
			if !slices.Equal(gotNames, tt.want) {
				t.Fatalf("ListAudit(%+v) = %q, want %q", tt.q, gotNames, tt.want)
			}
		})
	}
}

func testAuditPagination(t *testing.T, s certdb.AuditStore) {
	now := refNow()
	const n = 250
	var ids []int64 // in append order
	var revokes []int64
	for i := range n {
		e := &certdb.AuditEvent{Time: now.Add(time.Duration(i) * time.Second), Actor: "token:pager", Action: "issue", Outcome: "ok", Detail: fmt.Sprint(i)}
		if i%3 == 0 {
			e.Action = "revoke"
		}
		mustAppend(t, s, e)
		ids = append(ids, e.ID)
		if e.Action == "revoke" {
			revokes = append(revokes, e.ID)
		}
	}
	newestFirst := func(l []int64) []int64 {
		out := slices.Clone(l)
		slices.Reverse(out)
		return out
	}

	pageAll := func(t *testing.T, q certdb.AuditQuery, pageSize int) []int64 {
		t.Helper()
		var all []int64
		for pages := 0; ; pages++ {
			if pages > n {
				t.Fatalf("pagination does not terminate")
			}
			page := mustListAudit(t, s, q)
			if len(page) > pageSize {
				t.Fatalf("page of %d events, limit %d", len(page), pageSize)
			}
			for _, e := range page {
				if q.Before != 0 && e.ID >= q.Before {
					t.Fatalf("event %d is not before the cursor %d", e.ID, q.Before)
				}
				if len(all) > 0 && e.ID >= all[len(all)-1] {
					t.Fatalf("event %d listed after %d: not newest first", e.ID, all[len(all)-1])
				}
				all = append(all, e.ID)
			}
			if len(page) < pageSize {
				return all
			}
			q.Before = page[len(page)-1].ID
		}
	}
	t.Run("every event once, pages of 7", func(t *testing.T) {
		if got, want := pageAll(t, certdb.AuditQuery{Limit: 7}, 7), newestFirst(ids); !slices.Equal(got, want) {
			t.Fatalf("paged %d events, want the %d appended, newest first", len(got), len(want))
		}
	})
	t.Run("revokes, pages of 5", func(t *testing.T) {
		if got, want := pageAll(t, certdb.AuditQuery{Action: "revoke", Limit: 5}, 5), newestFirst(revokes); !slices.Equal(got, want) {
			t.Fatalf("paged %d revoke events, want %d", len(got), len(want))
		}
	})
	t.Run("limits", func(t *testing.T) {
		for _, tt := range []struct{ limit, want int }{
			{0, certdb.DefaultLimit},
			{-1, certdb.DefaultLimit},
			{1, 1},
			{certdb.MaxLimit + 1, n}, // capped at MaxLimit, which is more than n
		} {
			t.Run(fmt.Sprint(tt.limit), func(t *testing.T) {
				if eff := (certdb.AuditQuery{Limit: tt.limit}).EffectiveLimit(); eff < tt.want {
					t.Fatalf("test bug: EffectiveLimit(%d) = %d", tt.limit, eff)
				}
				got := mustListAudit(t, s, certdb.AuditQuery{Limit: tt.limit})
				if len(got) != tt.want {
					t.Fatalf("ListAudit(Limit %d) returned %d events, want %d", tt.limit, len(got), tt.want)
				}
				for i, e := range got {
					if want := ids[n-1-i]; e.ID != want {
						t.Fatalf("event #%d = %d, want %d", i, e.ID, want)
					}
				}
			})
		}
	})
}

func testAuditConcurrent(t *testing.T, s certdb.AuditStore) {
	ctx := t.Context()
	const writers, each = 8, 20
	ids := make([][]int64, writers)
	errs := Race(writers, func(w int) error {
		for i := range each {
			e := &certdb.AuditEvent{Actor: fmt.Sprintf("token:w%d", w), Action: "issue", Outcome: "ok", Detail: fmt.Sprint(i)}
			if err := s.AppendAudit(ctx, e); err != nil {
				return err
			}
			ids[w] = append(ids[w], e.ID)
		}
		return nil
	})
	seen := map[int64]string{}
	for w, err := range errs {
		if err != nil {
			t.Fatalf("writer %d: AppendAudit error = %v", w, err)
		}
		for i, id := range ids[w] {
			if i > 0 && id <= ids[w][i-1] {
				t.Errorf("writer %d: event %d got ID %d after %d: IDs must increase", w, i, id, ids[w][i-1])
			}
			if prev, dup := seen[id]; dup {
				t.Errorf("ID %d given to writer %d event %d and to %s", id, w, i, prev)
			}
			seen[id] = fmt.Sprintf("writer %d event %d", w, i)
		}
	}
	got := mustListAudit(t, s, certdb.AuditQuery{Limit: certdb.MaxLimit})
	if len(got) != writers*each {
		t.Fatalf("ListAudit() returned %d events, want %d (events lost or duplicated)", len(got), writers*each)
	}
	for _, e := range got {
		want, ok := seen[e.ID]
		if !ok {
			t.Fatalf("ListAudit() returned event %d that no writer appended", e.ID)
		}
		var w, i int
		fmt.Sscanf(want, "writer %d event %d", &w, &i)
		if e.Actor != fmt.Sprintf("token:w%d", w) || e.Detail != fmt.Sprint(i) {
			t.Errorf("event %d = %s/%s, want %s", e.ID, e.Actor, e.Detail, want)
		}
	}
	for w := range writers {
		if got := mustListAudit(t, s, certdb.AuditQuery{Actor: fmt.Sprintf("token:w%d", w)}); len(got) != each {
			t.Errorf("writer %d: %d events listed, want %d", w, len(got), each)
		}
	}
}

func testTokenAuditInvalid(t *testing.T, s tokenAuditStore) {
	ctx := t.Context()
	now := refNow()
	valid := NewToken("tok-valid")
	mustCreateToken(t, s, valid)

	with := func(f func(*certdb.Token)) *certdb.Token {
		tok := NewToken("tok-invalid")
		f(tok)
		return tok
	}
	hex := fmt.Appendf(nil, "%x", valid.Hash) // a hex-encoded hash is 64 bytes, not a SHA-256
	tests := []struct {
		name string
		fn   func() error
	}{
		{"CreateToken nil", func() error { return s.CreateToken(ctx, nil) }},
		{"CreateToken empty ID", func() error { return s.CreateToken(ctx, with(func(t *certdb.Token) { t.ID = "" })) }},
		{"CreateToken nil hash", func() error { return s.CreateToken(ctx, with(func(t *certdb.Token) { t.Hash = nil })) }},
		{"CreateToken 31-byte hash", func() error { return s.CreateToken(ctx, with(func(t *certdb.Token) { t.Hash = t.Hash[:31] })) }},
		{"CreateToken 33-byte hash", func() error {
			return s.CreateToken(ctx, with(func(t *certdb.Token) { t.Hash = append(t.Hash, 0) }))
		}},
		{"CreateToken hex hash", func() error { return s.CreateToken(ctx, with(func(t *certdb.Token) { t.Hash = hex })) }},
		{"CreateToken no expiry", func() error {
			return s.CreateToken(ctx, with(func(t *certdb.Token) { t.ExpiresAt = time.Time{} }))
		}},
		{"CreateToken existing ID without expiry", func() error { // ErrInvalid before ErrDuplicate
			return s.CreateToken(ctx, with(func(t *certdb.Token) { t.ID, t.ExpiresAt = valid.ID, time.Time{} }))
		}},
		{"UseToken zero time", func() error { return s.UseToken(ctx, valid.ID, time.Time{}) }},
		{"RevokeToken zero time", func() error { return s.RevokeToken(ctx, valid.ID, time.Time{}) }},
		{"AppendAudit nil", func() error { return s.AppendAudit(ctx, nil) }},
		{"AppendAudit no action", func() error {
			e := &certdb.AuditEvent{Time: now, Actor: "token:x", Outcome: "ok"}
			err := s.AppendAudit(ctx, e)
			if e.ID != 0 {
				t.Errorf("AppendAudit of an invalid event set ID %d", e.ID)
			}
			return err
		}},
		{"ListAudit negative cursor", func() error {
			_, err := s.ListAudit(ctx, certdb.AuditQuery{Before: -1})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.fn(); !errors.Is(err, certdb.ErrInvalid) {
				t.Fatalf("error = %v, want ErrInvalid", err)
			}
		})
	}

	// Nothing above may have changed the store.
	list, err := s.ListTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 {
		t.Fatalf("after invalid calls: %d tokens, want 1", len(list))
	}
	checkToken(t, "after invalid calls", list[0], valid)
	if got := mustListAudit(t, s, certdb.AuditQuery{}); len(got) != 0 {
		t.Fatalf("after invalid calls: %d audit events, want 0", len(got))
	}
}
