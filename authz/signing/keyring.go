// Package signing holds the signing keys of the authorization server: the
// algorithms it can generate keys of, generating them, keeping them in the
// store, rotating them, and the published key set (JWKS), which keeps a
// retired key while tokens it signed may live. Several nodes of one store
// share one current key.
package signing

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/caddy-uma/caddy-uma/authz/jwsform"
	"github.com/caddy-uma/caddy-uma/authz/verified"
	"github.com/caddy-uma/caddy-uma/store"
)

// Algorithms are the JWS algorithms of the keys the AS can generate to
// sign its tokens; the first is the default.
var Algorithms = []string{"ES256", "EdDSA", "RS256"}

// CheckAlg reports whether alg is one of Algorithms.
func CheckAlg(alg string) error {
	if !slices.Contains(Algorithms, alg) {
		return fmt.Errorf("unsupported signing algorithm %q (want %s)", alg, strings.Join(Algorithms, ", "))
	}
	return nil
}

// Namespace is the Records namespace of signing keys. Its changes (the
// store's change feed) mean that another node rotated the keys: Load them
// again.
const Namespace = "signing_key"

// keyRecord is a signing key as persisted. The private key never leaves the
// store except to sign; only public keys are published.
type keyRecord struct {
	ID        string          `json:"kid"`
	Alg       string          `json:"alg"`
	JWK       json.RawMessage `json:"jwk"`
	CreatedAt time.Time       `json:"created_at"`
	RetiredAt time.Time       `json:"retired_at,omitzero"`
}

// signingKey is a loaded key record.
type signingKey struct {
	rec     keyRecord
	alg     jwa.SignatureAlgorithm
	private jwk.Key
	public  jwk.Key
}

// Options configure a KeyRing.
type Options struct {
	// Store keeps the keys (namespace Namespace).
	Store store.Records
	// Alg is the algorithm of the keys to generate, one of Algorithms;
	// empty means the first.
	Alg string
	// Rotation is how long a key is current before a new one replaces
	// it; zero or less: until Rotate.
	Rotation time.Duration
	// Retention is how long a retired key stays published: the lifetime
	// of the longest-lived token it may have signed.
	Retention time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Open returns the key ring of opts, its keys read from the store: a
// current key of the configured algorithm is generated on first start,
// or when the current one is due for rotation.
func Open(ctx context.Context, opts Options) (*KeyRing, error) {
	if opts.Alg == "" {
		opts.Alg = Algorithms[0]
	}
	if err := CheckAlg(opts.Alg); err != nil {
		return nil, err
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	kr := &KeyRing{store: opts.Store, alg: opts.Alg, rotation: opts.Rotation, retention: opts.Retention, now: opts.Now}
	kr.verified.Max = maxVerified
	if err := kr.Load(ctx); err != nil {
		return nil, err
	}
	return kr, nil
}

// KeyRing holds the current signing key and the retired keys still
// published in the JWKS, so that tokens they signed stay verifiable until
// they expire. It is safe for concurrent use.
type KeyRing struct {
	store    store.Records
	alg      string
	rotation time.Duration
	// retention is Options.Retention.
	retention time.Duration
	now       func() time.Time

	mu       sync.RWMutex
	current  *signingKey
	keys     []*signingKey // current and retired, newest first
	public   jwk.Set
	jwks     []byte
	loadedAt time.Time

	// verified are the tokens whose signature verified, each with the key
	// set that verified it.
	verified verified.Tokens[verifiedToken]
}

// verifiedToken is a token that verified under the key set set.
type verifiedToken struct {
	set jwk.Set
	tok jwt.Token
}

// maxVerified bounds the tokens Verify keeps: one per RPT introspected
// or verified by a co-hosted enforcement point in the last while, a few
// KiB each.
const maxVerified = 4096

// The current signing key is one record (Namespace, currentKeyName)
// that every node reads: it holds the key itself. A node that finds none,
// or finds it due for rotation, generates a key in memory and makes it
// current with a compare-and-swap: of nodes racing, one wins, and the
// others take the winner's key (theirs was never written). Before the swap,
// the key it replaces is kept under its kid, marked retired; after it, the
// winner keeps its key under its kid too. A retired key stays published
// while tokens it signed may live, on the node that retired it as on the
// others.

// currentKeyName is the key, in Namespace, of the current signing key.
// No key id can be it (kids are base64url).
const currentKeyName = "~current"

// Load reads the keys from the store again (another node may have rotated
// them) and makes sure a current key of the configured algorithm exists,
// generating one when none is, or when the current one is due for
// rotation.
func (kr *KeyRing) Load(ctx context.Context) error {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	return kr.loadLocked(ctx)
}

func (kr *KeyRing) loadLocked(ctx context.Context) error { return kr.refresh(ctx, false) }

// Rotate makes a new current signing key now, whatever the rotation
// period (every node of the store takes it), and returns its kid. If
// another node makes its own key current at the same moment, that one is
// taken. The key it replaces stays published while tokens it signed may
// live.
func (kr *KeyRing) Rotate(ctx context.Context) (string, error) {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	if err := kr.refresh(ctx, true); err != nil {
		return "", err
	}
	return kr.current.rec.ID, nil
}

// refresh is Load, with the mutex held; with rotate, a new key replaces
// the current one even if it is not due.
func (kr *KeyRing) refresh(ctx context.Context, rotate bool) error {
	for attempt := 0; ; attempt++ {
		keys, stored, current, err := kr.read(ctx)
		if err != nil {
			return err
		}
		now := kr.now()
		if current != nil && !rotate && current.rec.Alg == kr.alg && (kr.rotation <= 0 || now.Sub(current.rec.CreatedAt) < kr.rotation) {
			if stored == nil {
				// A store written before the current key had its record:
				// give it one (one node wins; the others read it).
				val, err := json.Marshal(current.rec)
				if err != nil {
					return err
				}
				if err := kr.store.Swap(ctx, Namespace, currentKeyName, nil, val, time.Time{}); err != nil && !errors.Is(err, store.ErrConflict) {
					return fmt.Errorf("recording the current signing key: %w", err)
				}
			}
			return kr.publish(keys, current, now)
		}
		if attempt > 0 {
			return errors.New("the current signing key keeps changing")
		}
		fresh, err := kr.generate(now)
		if err != nil {
			return err
		}
		val, err := json.Marshal(fresh.rec)
		if err != nil {
			return err
		}
		if current != nil {
			// The key that is replaced, retired under its kid before the
			// swap: its tokens still verify everywhere, even if this node
			// stops right after the swap (or if its own node stopped
			// before keeping it under its kid). A swap lost means that
			// another node replaced it: retired all the same.
			current.rec.RetiredAt = now
			if err := kr.put(ctx, current.rec); err != nil {
				return err
			}
			keys = append([]*signingKey{current}, keys...)
		}
		err = kr.store.Swap(ctx, Namespace, currentKeyName, stored, val, time.Time{})
		if errors.Is(err, store.ErrConflict) {
			rotate = false
			continue // another node made its key current first: take it
		}
		if err != nil {
			return fmt.Errorf("storing the new signing key: %w", err)
		}
		// The new key under its kid, and every other active key retired
		// (the one it replaces already is, and is in keys).
		if err := kr.put(ctx, fresh.rec); err != nil {
			return err
		}
		for _, k := range keys {
			if k.rec.RetiredAt.IsZero() {
				k.rec.RetiredAt = now
				if err := kr.put(ctx, k.rec); err != nil {
					return err
				}
			}
		}
		return kr.publish(append([]*signingKey{fresh}, keys...), fresh, now)
	}
}

// read returns the keys kept under their kids, newest first, the value of
// the current key's record (nil if none) and the current key (nil if none
// can be had). Without a current key record, the newest active key of the
// configured algorithm is taken (a store written before there was one).
func (kr *KeyRing) read(ctx context.Context) (keys []*signingKey, stored []byte, current *signingKey, err error) {
	recs, err := kr.store.List(ctx, Namespace, "", 0)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("listing signing keys: %w", err)
	}
	for _, r := range recs {
		var rec keyRecord
		if err := json.Unmarshal(r.Value, &rec); err != nil {
			return nil, nil, nil, fmt.Errorf("decoding signing key %q: %w", r.Key, err)
		}
		k, err := parseKeyRecord(rec)
		if err != nil {
			return nil, nil, nil, err
		}
		if r.Key == currentKeyName {
			stored, current = r.Value, k
			continue
		}
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].rec.CreatedAt.After(keys[j].rec.CreatedAt) })
	if current != nil {
		// The current key is also kept under its kid (but right after it
		// became current): one of them.
		keys = slices.DeleteFunc(keys, func(k *signingKey) bool { return k.rec.ID == current.rec.ID })
		return keys, stored, current, nil
	}
	for _, k := range keys {
		if k.rec.RetiredAt.IsZero() && k.rec.Alg == kr.alg {
			current = k
			break
		}
	}
	if current != nil {
		keys = slices.DeleteFunc(keys, func(k *signingKey) bool { return k == current })
	}
	return keys, nil, current, nil
}

// publish makes current the signing key and publishes it with the other
// keys whose tokens may still live: retired less than retention ago. A key
// not marked retired that is older than the current one was current before
// it (its node stopped before it marked it): it counts as retired when the
// current key was made.
func (kr *KeyRing) publish(others []*signingKey, current *signingKey, now time.Time) error {
	set := jwk.NewSet()
	if err := set.AddKey(current.public); err != nil {
		return fmt.Errorf("building the JWKS: %w", err)
	}
	live := []*signingKey{current}
	for _, k := range others {
		if k == current {
			continue
		}
		retired := k.rec.RetiredAt
		if retired.IsZero() {
			if !k.rec.CreatedAt.Before(current.rec.CreatedAt) {
				continue // never current
			}
			retired = current.rec.CreatedAt
		}
		if now.After(retired.Add(kr.retention)) {
			continue
		}
		live = append(live, k)
		if err := set.AddKey(k.public); err != nil {
			return fmt.Errorf("building the JWKS: %w", err)
		}
	}
	jwks, err := json.Marshal(set)
	if err != nil {
		return fmt.Errorf("encoding the JWKS: %w", err)
	}
	kr.current, kr.keys, kr.public, kr.jwks = current, live, set, jwks
	kr.loadedAt = now
	return nil
}

func (kr *KeyRing) put(ctx context.Context, rec keyRecord) error {
	val, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	var exp time.Time
	if !rec.RetiredAt.IsZero() {
		exp = rec.RetiredAt.Add(kr.retention + time.Minute)
	}
	if err := kr.store.Put(ctx, Namespace, rec.ID, val, exp); err != nil {
		return fmt.Errorf("storing signing key: %w", err)
	}
	return nil
}

// generate creates a new signing key, in memory.
func (kr *KeyRing) generate(now time.Time) (*signingKey, error) {
	var raw any
	var err error
	switch kr.alg {
	case "ES256":
		raw, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "EdDSA":
		_, raw, err = ed25519.GenerateKey(rand.Reader)
	case "RS256":
		raw, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		return nil, fmt.Errorf("unsupported signing algorithm %q", kr.alg)
	}
	if err != nil {
		return nil, fmt.Errorf("generating a %s key: %w", kr.alg, err)
	}
	key, err := jwk.Import(raw)
	if err != nil {
		return nil, fmt.Errorf("importing the new key: %w", err)
	}
	if err := jwk.AssignKeyID(key); err != nil {
		return nil, fmt.Errorf("assigning a key id: %w", err)
	}
	kid, _ := key.KeyID()
	alg, _ := jwa.LookupSignatureAlgorithm(kr.alg)
	if err := key.Set(jwk.AlgorithmKey, alg); err != nil {
		return nil, err
	}
	if err := key.Set(jwk.KeyUsageKey, "sig"); err != nil {
		return nil, err
	}
	enc, err := json.Marshal(key)
	if err != nil {
		return nil, fmt.Errorf("encoding the new key: %w", err)
	}
	return parseKeyRecord(keyRecord{ID: kid, Alg: kr.alg, JWK: enc, CreatedAt: now})
}

func parseKeyRecord(rec keyRecord) (*signingKey, error) {
	priv, err := jwk.ParseKey(rec.JWK)
	if err != nil {
		return nil, fmt.Errorf("parsing signing key %q: %w", rec.ID, err)
	}
	pub, err := jwk.PublicKeyOf(priv)
	if err != nil {
		return nil, fmt.Errorf("deriving public key of %q: %w", rec.ID, err)
	}
	alg, ok := jwa.LookupSignatureAlgorithm(rec.Alg)
	if !ok {
		return nil, fmt.Errorf("signing key %q has unknown algorithm %q", rec.ID, rec.Alg)
	}
	return &signingKey{rec: rec, alg: alg, private: priv, public: pub}, nil
}

// rotateIfDue replaces the current key when the rotation period has passed.
func (kr *KeyRing) rotateIfDue(ctx context.Context) error {
	if kr.rotation <= 0 {
		return nil
	}
	kr.mu.RLock()
	due := kr.now().Sub(kr.current.rec.CreatedAt) >= kr.rotation
	kr.mu.RUnlock()
	if !due {
		return nil
	}
	kr.mu.Lock()
	defer kr.mu.Unlock()
	return kr.loadLocked(ctx)
}

// JWKS returns the published key set as JSON: the public keys only.
func (kr *KeyRing) JWKS() []byte {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	return kr.jwks
}

// Sign signs tok with the current key (rotating it first when due), in
// the canonical low-S form of package jwsform.
func (kr *KeyRing) Sign(ctx context.Context, tok jwt.Token) (string, error) {
	if err := kr.rotateIfDue(ctx); err != nil {
		return "", err
	}
	kr.mu.RLock()
	k := kr.current
	kr.mu.RUnlock()
	b, err := jwt.Sign(tok, jwt.WithKey(k.alg, k.private))
	if err != nil {
		return "", fmt.Errorf("signing a token: %w", err)
	}
	return jwsform.LowS(string(b), k.alg.String()), nil
}

// ErrBadSignature reports a token not signed by one of the published keys.
var ErrBadSignature = errors.New("token signature does not verify with the AS keys")

// Verify parses a compact JWS signed by one of the published keys, without
// validating its claims; any other token is an ErrBadSignature.
// A token that does not verify may be signed by a key that another node
// made since the keys were read: they are read again, at most once per
// keyReloadInterval.
//
// A token that verified is kept (package verified) and, presented again,
// not verified again while the keys are those that verified it: a token is
// taken from memory only under the very key set it verified with, so keys
// read again (rotated, retired, or read for an unknown key) verify each
// token again once. The token returned may be shared with other callers:
// read it, do not change it.
func (kr *KeyRing) Verify(ctx context.Context, token string) (jwt.Token, error) {
	kr.mu.RLock()
	set, loadedAt := kr.public, kr.loadedAt
	kr.mu.RUnlock()
	sum := verified.Of(token)
	if kept, ok := kr.verified.Get(sum, kr.now()); ok && kept.set == set {
		return kept.tok, nil
	}
	tok, err := jwt.ParseString(token, jwt.WithKeySet(set), jwt.WithValidate(false))
	if err != nil && kr.now().Sub(loadedAt) >= keyReloadInterval {
		if kr.reload(ctx) == nil {
			kr.mu.RLock()
			set = kr.public
			kr.mu.RUnlock()
			tok, err = jwt.ParseString(token, jwt.WithKeySet(set), jwt.WithValidate(false))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	if exp, ok := tok.Expiration(); ok {
		kr.verified.Put(sum, verifiedToken{set: set, tok: tok}, exp)
	}
	return tok, nil
}

// keyReloadInterval is the least time between two reads of the keys caused
// by a token that does not verify.
const keyReloadInterval = time.Second

// reload reads the keys again for a token they do not verify, unless
// they were read less than keyReloadInterval ago.
func (kr *KeyRing) reload(ctx context.Context) error {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	if kr.now().Sub(kr.loadedAt) < keyReloadInterval {
		return nil // another caller just did
	}
	return kr.loadLocked(ctx)
}

// Key describes one of the published signing keys.
type Key struct {
	KeyID     string    `json:"kid"`
	Algorithm string    `json:"alg"`
	CreatedAt time.Time `json:"created_at"`
	// Current is true for the key that signs new tokens; the others are
	// retired, published while tokens they signed may live.
	Current bool `json:"current"`
}

// Keys lists the published signing keys, the current one first.
func (kr *KeyRing) Keys() []Key {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	out := make([]Key, 0, len(kr.keys))
	for _, k := range kr.keys {
		out = append(out, Key{KeyID: k.rec.ID, Algorithm: k.rec.Alg, CreatedAt: k.rec.CreatedAt.UTC(), Current: k == kr.current})
	}
	return out
}

// CurrentKeyID returns the key id of the current signing key; "" when
// none is loaded.
func (kr *KeyRing) CurrentKeyID() string {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	if kr.current == nil {
		return ""
	}
	return kr.current.rec.ID
}
