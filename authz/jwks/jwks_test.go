package jwks

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// testClock is a settable clock.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// keyServer serves a key set that tests replace, or an error status.
type keyServer struct {
	srv      *httptest.Server
	requests atomic.Int64

	mu     sync.Mutex
	doc    []byte
	status int
	// hold, when set, makes requests wait until it is closed.
	hold chan struct{}
}

func newKeyServer(t *testing.T, keys ...jwk.Key) *keyServer {
	t.Helper()
	s := &keyServer{}
	s.serve(t, keys...)
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/jwks" {
			http.NotFound(w, r)
			return
		}
		s.requests.Add(1)
		s.mu.Lock()
		doc, status, hold := s.doc, s.status, s.hold
		s.mu.Unlock()
		if hold != nil {
			<-hold
		}
		if status != http.StatusOK {
			w.WriteHeader(status)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(doc)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *keyServer) url() string { return s.srv.URL + "/jwks" }

// serve replaces the key set with keys, and answers 200.
func (s *keyServer) serve(t *testing.T, keys ...jwk.Key) {
	t.Helper()
	set := jwk.NewSet()
	for _, k := range keys {
		if err := set.AddKey(k); err != nil {
			t.Fatal(err)
		}
	}
	doc, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.doc, s.status = doc, http.StatusOK
	s.mu.Unlock()
}

// fail makes the server answer status.
func (s *keyServer) fail(status int) {
	s.mu.Lock()
	s.status = status
	s.mu.Unlock()
}

// publicKey returns the public part of a new P-256 key with the members
// given (empty ones are left out).
func publicKey(t *testing.T, kid, alg, use string) jwk.Key {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := jwk.Import(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{jwk.KeyIDKey: kid, jwk.AlgorithmKey: alg, jwk.KeyUsageKey: use} {
		if v == "" {
			continue
		}
		if err := k.Set(name, v); err != nil {
			t.Fatal(err)
		}
	}
	return k
}

func newSet(t *testing.T, cfg Config) *Set {
	t.Helper()
	s, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func kidOf(k jwk.Key) string {
	kid, _ := k.KeyID()
	return kid
}

func withKid(kid, alg string) Header { return Header{KeyID: kid, HasKeyID: true, Algorithm: alg} }

func TestKeySelection(t *testing.T) {
	sig := publicKey(t, "sig", "ES256", "sig")
	bare := publicKey(t, "bare", "", "")
	other := publicKey(t, "other", "ES256", "")
	enc := publicKey(t, "enc", "", "enc")

	tests := []struct {
		name    string
		keys    []jwk.Key
		header  Header
		wantKid string
		wantErr error
		wantMsg string
	}{
		{name: "kid", keys: []jwk.Key{sig, other}, header: withKid("sig", "ES256"), wantKid: "sig"},
		{name: "kid of a key without use and alg", keys: []jwk.Key{bare}, header: withKid("bare", "ES384"), wantKid: "bare"},
		{name: "no kid, the only signing key", keys: []jwk.Key{enc, sig}, header: Header{Algorithm: "ES256"}, wantKid: "sig"},
		{name: "no kid, a key without use", keys: []jwk.Key{bare}, header: Header{Algorithm: "ES256"}, wantKid: "bare"},
		{
			name: "no kid, several signing keys", keys: []jwk.Key{sig, bare, enc}, header: Header{Algorithm: "ES256"},
			wantErr: ErrAmbiguousKey, wantMsg: "the token has no kid and the key set has 2 signing keys",
		},
		{name: "no kid, no signing key", keys: []jwk.Key{enc}, header: Header{Algorithm: "ES256"}, wantErr: ErrUnknownKey, wantMsg: "no signing key"},
		{name: "no kid, empty set", header: Header{Algorithm: "ES256"}, wantErr: ErrUnknownKey, wantMsg: "no signing key"},
		{name: "unknown kid", keys: []jwk.Key{sig}, header: withKid("gone", "ES256"), wantErr: ErrUnknownKey, wantMsg: `no key with kid "gone"`},
		{name: "an empty kid is a kid", keys: []jwk.Key{sig}, header: withKid("", "ES256"), wantErr: ErrUnknownKey, wantMsg: `no key with kid ""`},
		{name: "kid of an encryption key", keys: []jwk.Key{sig, enc}, header: withKid("enc", "ES256"), wantErr: ErrNotSigningKey, wantMsg: `key "enc" is not a signing key`},
		{
			name: "key for another algorithm", keys: []jwk.Key{sig}, header: withKid("sig", "ES384"),
			wantErr: ErrAlgorithmMismatch, wantMsg: `key "sig" is for algorithm "ES256", not "ES384"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newKeyServer(t, tt.keys...)
			s := newSet(t, Config{URL: srv.url(), Now: (&testClock{t: time.Unix(1_700_000_000, 0)}).Now})
			key, err := s.Key(t.Context(), tt.header)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Key: %v", err)
				}
				if got := kidOf(key); got != tt.wantKid {
					t.Fatalf("key %q, want %q", got, tt.wantKid)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Key error = %v, want %v", err, tt.wantErr)
			}
			var ke *KeyError
			if !errors.As(err, &ke) {
				t.Fatalf("Key error %T is not a *KeyError", err)
			}
			if ke.Error() != tt.wantMsg {
				t.Errorf("message %q, want %q", ke.Error(), tt.wantMsg)
			}
			if errors.Is(err, ErrUnavailable) {
				t.Errorf("error %v also matches ErrUnavailable", err)
			}
		})
	}
}

// step is one call of Key in a sequence: the clock is advanced first,
// then the server changed, then Key called.
type step struct {
	name    string
	advance time.Duration
	change  func(*testing.T, *keyServer)
	header  Header
	// wantKid is the key expected, or wantErr the error.
	wantKid      string
	wantErr      error
	wantRequests int64
}

func runSteps(t *testing.T, s *Set, srv *keyServer, clock *testClock, steps []step) {
	t.Helper()
	for _, st := range steps {
		clock.Advance(st.advance)
		if st.change != nil {
			st.change(t, srv)
		}
		key, err := s.Key(t.Context(), st.header)
		switch {
		case st.wantErr != nil && !errors.Is(err, st.wantErr):
			t.Errorf("%s: Key error = %v, want %v", st.name, err, st.wantErr)
		case st.wantErr == nil && err != nil:
			t.Errorf("%s: Key: %v", st.name, err)
		case st.wantErr == nil && kidOf(key) != st.wantKid:
			t.Errorf("%s: key %q, want %q", st.name, kidOf(key), st.wantKid)
		}
		if n := srv.requests.Load(); n != st.wantRequests {
			t.Errorf("%s: %d requests, want %d", st.name, n, st.wantRequests)
		}
	}
}

func TestFetching(t *testing.T) {
	const minRefresh = 30 * time.Second
	k1 := publicKey(t, "k1", "ES256", "sig")
	k2 := publicKey(t, "k2", "ES256", "sig")
	serve := func(keys ...jwk.Key) func(*testing.T, *keyServer) {
		return func(t *testing.T, s *keyServer) { s.serve(t, keys...) }
	}
	fail := func(t *testing.T, s *keyServer) { s.fail(http.StatusInternalServerError) }

	tests := []struct {
		name  string
		keys  []jwk.Key
		steps []step
	}{
		{
			name: "rotation",
			keys: []jwk.Key{k1},
			steps: []step{
				{name: "first use fetches", header: withKid("k1", "ES256"), wantKid: "k1", wantRequests: 1},
				{name: "known kid", header: withKid("k1", "ES256"), wantKid: "k1", wantRequests: 1},
				{name: "new kid within MinRefresh of the last fetch", change: serve(k2), header: withKid("k2", "ES256"), wantErr: ErrUnknownKey, wantRequests: 1},
				{name: "new kid just before MinRefresh", advance: minRefresh - time.Second, header: withKid("k2", "ES256"), wantErr: ErrUnknownKey, wantRequests: 1},
				{name: "new kid after MinRefresh", advance: time.Second, header: withKid("k2", "ES256"), wantKid: "k2", wantRequests: 2},
				{name: "old kid, gone, within MinRefresh", header: withKid("k1", "ES256"), wantErr: ErrUnknownKey, wantRequests: 2},
				{name: "made-up kid after MinRefresh", advance: minRefresh, header: withKid("made-up", "ES256"), wantErr: ErrUnknownKey, wantRequests: 3},
				{name: "made-up kid again", header: withKid("made-up", "ES256"), wantErr: ErrUnknownKey, wantRequests: 3},
			},
		},
		{
			name: "retries while never fetched",
			keys: []jwk.Key{k1},
			steps: []step{
				{name: "down at first use", change: fail, header: withKid("k1", "ES256"), wantErr: ErrUnavailable, wantRequests: 1},
				{name: "again at once", header: withKid("k1", "ES256"), wantErr: ErrUnavailable, wantRequests: 1},
				{name: "just before RetryInterval", advance: time.Second - time.Millisecond, header: withKid("k1", "ES256"), wantErr: ErrUnavailable, wantRequests: 1},
				{name: "RetryInterval after one failure", advance: time.Millisecond, header: withKid("k1", "ES256"), wantErr: ErrUnavailable, wantRequests: 2},
				{name: "RetryInterval after two failures: no backoff", advance: time.Second, header: withKid("k1", "ES256"), wantErr: ErrUnavailable, wantRequests: 3},
				{name: "RetryInterval after three failures", advance: time.Second, header: withKid("k1", "ES256"), wantErr: ErrUnavailable, wantRequests: 4},
				{name: "a minute later: one request, not sixty", advance: time.Minute, header: withKid("k1", "ES256"), wantErr: ErrUnavailable, wantRequests: 5},
				{name: "back up, within RetryInterval of the failure", change: serve(k1), header: withKid("k1", "ES256"), wantErr: ErrUnavailable, wantRequests: 5},
				{name: "back up, RetryInterval later", advance: time.Second, header: withKid("k1", "ES256"), wantKid: "k1", wantRequests: 6},
				{name: "fetched: MinRefresh applies", advance: 2 * time.Second, header: withKid("k2", "ES256"), wantErr: ErrUnknownKey, wantRequests: 6},
				{name: "unknown kid just before MinRefresh", advance: minRefresh - 3*time.Second, header: withKid("k2", "ES256"), wantErr: ErrUnknownKey, wantRequests: 6},
			},
		},
		{
			name: "keys kept while the server is down",
			keys: []jwk.Key{k1},
			steps: []step{
				{name: "fetched", header: withKid("k1", "ES256"), wantKid: "k1", wantRequests: 1},
				{name: "unknown kid, server down", advance: minRefresh, change: fail, header: withKid("k2", "ES256"), wantErr: ErrUnavailable, wantRequests: 2},
				{name: "known kid, server down", header: withKid("k1", "ES256"), wantKid: "k1", wantRequests: 2},
				{name: "unknown kid within RetryInterval of the failed fetch", advance: time.Second / 2, header: withKid("k2", "ES256"), wantErr: ErrUnavailable, wantRequests: 2},
				{name: "unknown kid RetryInterval after the failed fetch", advance: time.Second / 2, header: withKid("k2", "ES256"), wantErr: ErrUnavailable, wantRequests: 3},
				{name: "back up, RetryInterval later", advance: time.Second, change: serve(k1, k2), header: withKid("k2", "ES256"), wantKid: "k2", wantRequests: 4},
				{name: "fetched: MinRefresh applies to made-up kids", advance: time.Second, header: withKid("made-up", "ES256"), wantErr: ErrUnknownKey, wantRequests: 4},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newKeyServer(t, tt.keys...)
			clock := &testClock{t: time.Unix(1_700_000_000, 0)}
			s := newSet(t, Config{URL: srv.url(), Now: clock.Now, MinRefresh: minRefresh})
			if n := srv.requests.Load(); n != 0 {
				t.Fatalf("%d requests before first use, want 0", n)
			}
			runSteps(t, s, srv, clock, tt.steps)
		})
	}
}

func TestConcurrentCallersShareAFetch(t *testing.T) {
	k1 := publicKey(t, "k1", "ES256", "sig")
	k2 := publicKey(t, "k2", "ES256", "sig")
	srv := newKeyServer(t, k1)
	clock := &testClock{t: time.Unix(1_700_000_000, 0)}
	s := newSet(t, Config{URL: srv.url(), Now: clock.Now})
	if _, err := s.Key(t.Context(), withKid("k1", "ES256")); err != nil {
		t.Fatal(err)
	}

	// The next fetch waits until all callers are started; whether a caller
	// joins it or comes after it, it sees its outcome.
	clock.Advance(DefaultMinRefresh)
	hold := make(chan struct{})
	srv.mu.Lock()
	srv.hold = hold
	srv.mu.Unlock()
	srv.serve(t, k1, k2)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := range 32 {
		wg.Go(func() {
			kid := "k2"
			if i%2 == 1 {
				kid = "made-up"
			}
			_, err := s.Key(t.Context(), withKid(kid, "ES256"))
			if kid == "k2" && err != nil || kid != "k2" && !errors.Is(err, ErrUnknownKey) {
				errs <- err
			}
		})
	}
	close(hold)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Key: %v", err)
	}
	if n := srv.requests.Load(); n != 2 {
		t.Errorf("%d requests, want 2 (one shared fetch)", n)
	}
}

func TestCallerContext(t *testing.T) {
	k1 := publicKey(t, "k1", "ES256", "sig")

	t.Run("ended before", func(t *testing.T) {
		srv := newKeyServer(t, k1)
		s := newSet(t, Config{URL: srv.url()})
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := s.Key(ctx, withKid("k1", "ES256"))
		if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want ErrUnavailable and context.Canceled", err)
		}
		if n := srv.requests.Load(); n != 0 {
			t.Errorf("%d requests, want none", n)
		}
	})

	t.Run("ends during the fetch, which goes on", func(t *testing.T) {
		srv := newKeyServer(t, k1)
		hold := make(chan struct{})
		srv.mu.Lock()
		srv.hold = hold
		srv.mu.Unlock()
		clock := &testClock{t: time.Unix(1_700_000_000, 0)}
		s := newSet(t, Config{URL: srv.url(), Now: clock.Now})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() {
			_, err := s.Key(ctx, withKid("k1", "ES256"))
			done <- err
		}()
		cancel()
		if err := <-done; !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want ErrUnavailable and context.Canceled", err)
		}
		close(hold)
		// The fetch completes for the next caller, without a second
		// request (or with none at all, if the first caller gave up before
		// it started).
		if err := s.Refresh(t.Context()); err != nil {
			t.Fatalf("Refresh: %v", err)
		}
		if _, err := s.Key(t.Context(), withKid("k1", "ES256")); err != nil {
			t.Fatalf("Key after the shared fetch: %v", err)
		}
		if n := srv.requests.Load(); n != 1 {
			t.Errorf("%d requests, want 1", n)
		}
	})
}

func TestResolve(t *testing.T) {
	k1 := publicKey(t, "k1", "ES256", "sig")
	srv := newKeyServer(t, k1)
	clock := &testClock{t: time.Unix(1_700_000_000, 0)}
	var resolves atomic.Int64
	s := newSet(t, Config{
		Now: clock.Now,
		Resolve: func(context.Context) (string, error) {
			if resolves.Add(1) == 1 {
				return "", errors.New("discovery is down")
			}
			return srv.url(), nil
		},
	})
	if n := resolves.Load(); n != 0 {
		t.Fatalf("resolved %d times before first use", n)
	}
	runSteps(t, s, srv, clock, []step{
		{name: "resolving fails", header: withKid("k1", "ES256"), wantErr: ErrUnavailable, wantRequests: 0},
		{name: "resolved on the retry", advance: 2 * time.Second, header: withKid("k1", "ES256"), wantKid: "k1", wantRequests: 1},
		{name: "unknown kid: the set, not the URL, is fetched again", advance: DefaultMinRefresh, header: withKid("k2", "ES256"), wantErr: ErrUnknownKey, wantRequests: 2},
	})
	if n := resolves.Load(); n != 2 {
		t.Errorf("resolved %d times, want 2", n)
	}
}

func TestRefresh(t *testing.T) {
	k1 := publicKey(t, "k1", "ES256", "sig")
	srv := newKeyServer(t, k1)
	clock := &testClock{t: time.Unix(1_700_000_000, 0)}
	s := newSet(t, Config{URL: srv.url(), Now: clock.Now})
	if err := s.Refresh(t.Context()); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if err := s.Refresh(t.Context()); err != nil {
		t.Fatalf("Refresh within MinRefresh: %v, want the last outcome (nil)", err)
	}
	if n := srv.requests.Load(); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
	srv.fail(http.StatusBadGateway)
	clock.Advance(DefaultMinRefresh)
	if err := s.Refresh(t.Context()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Refresh with the server down: %v, want ErrUnavailable", err)
	}
	if _, err := s.Key(t.Context(), withKid("k1", "ES256")); err != nil {
		t.Fatalf("keys kept after a failed refresh: %v", err)
	}
}

func TestClose(t *testing.T) {
	k1 := publicKey(t, "k1", "ES256", "sig")
	srv := newKeyServer(t, k1)
	clock := &testClock{t: time.Unix(1_700_000_000, 0)}
	s, err := New(t.Context(), Config{URL: srv.url(), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Key(t.Context(), withKid("k1", "ES256")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := s.Key(t.Context(), withKid("k1", "ES256")); err != nil {
		t.Errorf("keys fetched before Close: %v", err)
	}
	clock.Advance(time.Hour)
	if _, err := s.Key(t.Context(), withKid("k2", "ES256")); !errors.Is(err, ErrUnavailable) {
		t.Errorf("unknown kid after Close: %v, want ErrUnavailable", err)
	}
	if n := srv.requests.Load(); n != 1 {
		t.Errorf("%d requests, want 1 (none after Close)", n)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	// A set never used closes too.
	unused, err := New(t.Context(), Config{URL: srv.url()})
	if err != nil {
		t.Fatal(err)
	}
	if err := unused.Close(); err != nil {
		t.Errorf("Close of an unused set: %v", err)
	}
}

func TestNew(t *testing.T) {
	if _, err := New(t.Context(), Config{}); err == nil {
		t.Error("New without URL or Resolve succeeded")
	}
}
