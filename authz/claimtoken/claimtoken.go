// Package claimtoken verifies the claim tokens that clients push at the
// token endpoint of the UMA grant (claim_token and claim_token_format), and
// accepts them only from issuers the operator trusts.
//
// Two formats are understood, both a compact JWS (a signed JWT):
//
//   - FormatIDToken, an OpenID Connect ID token. The https:// spelling used
//     in Keycloak's documentation is accepted as an alias.
//   - FormatJWT, a plain signed JWT. (Keycloak reads this format as a
//     base64url JSON object of claims instead; that reading is not
//     supported, because nothing would vouch for the claims.)
//
// UMA says a claim token is base64url-encoded unless its format says
// otherwise; a compact JWT already is, so the string is taken as the JWS.
//
// # Verification
//
// The unverified iss claim only selects the trusted issuer; the token must
// then verify under that issuer's keys and no other's. The checks are: a
// JWS algorithm on the issuer's list (never "none", never HMAC), the
// header's algorithm equal to the key's "alg" when the key has one (when it
// has none, the key type must fit the algorithm), a valid signature, iss
// equal to the configured issuer byte for byte, exp present and not past,
// nbf and iat not in the future, each with Options.Leeway, an aud holding
// at least one of the issuer's Audiences (when it has any), and a token
// issued to the client that presents it (see below). ID tokens must also
// carry iat and sub, as OpenID Connect requires. A token without kid is
// accepted when the issuer publishes exactly one signing key. Header
// members that point at keys (jku, x5u, jwk) are ignored, and a "crit"
// header is refused. A token presented again is not verified again while
// the key that verified it is still the issuer's (verified.go); every
// other check is made each time.
//
// # The client a token was issued to
//
// A claim token stands for the requesting party only in the hands of the
// client it was issued to: otherwise any client that once saw a person's
// ID token (another application of the same identity provider, say) could
// push it and act as that person. Verify therefore applies the checks
// OpenID Connect Core 1.0 section 3.1.3.7 asks of the client itself, for
// the client that pushed the token: its aud must contain that client's id;
// a token with several audiences must have an azp claim; and an azp claim,
// when present, must be that client's id (section 2: azp is "the party to
// which the ID Token was issued"). Plain JWTs are held to the same rule.
// The check fails with ErrNotForClient.
//
// A token whose only audience is the authorization server itself is
// issued to no client, so by default it does not count: any client that
// obtained it could replay it. An issuer configured with
// AnyClientAudience drops the client check and accepts a token carrying
// any of its Audiences from every client: the behaviour for identity
// providers whose tokens name a shared audience (the AS's issuer URL, an
// API), where the operator accepts that the clients can use each other's
// tokens.
//
// # Keys
//
// Each issuer's JWKS is a key set of package jwks: a jwk.Cache (httprc) of
// its own, refreshed every Options.RefreshInterval in the background; a
// failed refresh keeps the keys already known. When an issuer has no
// JWKSURI configured, the URL is discovered once from the issuer's
// /.well-known/openid-configuration with metadata.FetchOpenID: the
// document's issuer member must equal the issuer exactly, and its jwks_uri
// (and authorization and token endpoints, where present) must be absolute
// http(s) URLs, https if the issuer is. NewVerifier starts fetching at once
// but does not wait: an issuer that is down at start makes its tokens fail
// with ErrKeysUnavailable until a later attempt succeeds. Attempts are
// made when one of its tokens arrives, at most once per KeysRetryInterval
// (1 s) after a failed attempt, and, once the key set URL is known, also by
// the cache in the background: an issuer that comes back is used by the
// first token that arrives KeysRetryInterval after the last failure.
//
// A token whose kid is not in the issuer's key set makes the verifier fetch
// that key set again and retry, so an identity provider's key rotation is
// picked up by the first token signed with the new key. Such on-demand
// fetches happen at most once per Options.MinRefreshInterval for each
// issuer after a successful fetch, measured on Options.Now: a flood of
// tokens with made-up kids costs the identity provider one request per
// interval, and concurrent callers share a fetch in progress and its
// outcome. The keys fetched at start count: a rotation within
// MinRefreshInterval of the last fetch is seen only after the interval.
// While the last fetch failed, such tokens fail with ErrKeysUnavailable
// rather than ErrSignature, and the next fetch may start KeysRetryInterval
// after the failed one. (A token without kid that fails to verify does not
// cause a fetch.)
//
// ErrKeysUnavailable is a fault of the issuer, not of the token: callers
// should answer "try again later" (the UMA grant answers 503 with
// Retry-After), not that the claims were wrong.
//
// # Errors
//
// Every refusal matches one of the Err* sentinels with errors.Is. The
// message says what was wrong, names the issuer where known and never
// contains the token, so it can serve as the error_description of a
// need_info response. Details that would reveal the network (fetch
// errors) are logged, not returned.
package claimtoken

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"go.uber.org/zap"

	"github.com/caddy-uma/caddy-uma/authz/jwks"
	"github.com/caddy-uma/caddy-uma/authz/urlcheck"
	"github.com/caddy-uma/caddy-uma/authz/verified"
)

// Claim token formats (the claim_token_format parameter).
const (
	// FormatIDToken is an OpenID Connect ID token, with the URI the UMA
	// grant specification uses.
	FormatIDToken = "http://openid.net/specs/openid-connect-core-1_0.html#IDToken"
	// FormatJWT is a signed JWT.
	FormatJWT = "urn:ietf:params:oauth:token-type:jwt"

	// formatIDTokenHTTPS is the spelling of FormatIDToken in Keycloak's
	// documentation, accepted as an alias.
	formatIDTokenHTTPS = "https://openid.net/specs/openid-connect-core-1_0.html#IDToken"
)

// MaxTokenSize is the largest claim token accepted, in bytes.
const MaxTokenSize = 16 << 10

// Errors of Verify. Each wrapped error adds what was wrong.
var (
	ErrUnsupportedFormat = errors.New("claim token format is not supported")
	ErrMalformed         = errors.New("claim token is malformed")
	ErrUnsigned          = errors.New("unsigned claim tokens are not accepted")
	ErrUntrustedIssuer   = errors.New("claim token issuer is not trusted")
	ErrSignature         = errors.New("claim token signature is not valid")
	ErrExpired           = errors.New("claim token has expired")
	ErrNotYetValid       = errors.New("claim token is not valid yet")
	ErrAudience          = errors.New("claim token is not meant for this authorization server")
	ErrNotForClient      = errors.New("claim token was not issued to the client that presented it")
	ErrKeysUnavailable   = errors.New("signing keys of the claim token issuer are unavailable")
)

// KeysRetryInterval is the least time between two fetches of an issuer's
// keys after a failed one: a caller that got ErrKeysUnavailable may try
// again after it.
const KeysRetryInterval = jwks.DefaultRetryInterval

// defaultAlgorithms are the JWS algorithms accepted from an issuer whose
// Algorithms list is empty.
var defaultAlgorithms = []string{
	"RS256", "RS384", "RS512",
	"PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512",
	"EdDSA", "Ed25519",
}

// Issuer is an issuer of claim tokens that the operator trusts.
type Issuer struct {
	// Issuer is the exact iss value of its tokens, an http or https URL
	// without query or fragment. Use https outside tests.
	Issuer string
	// JWKSURI is the URL of the issuer's key set. When empty, it is read
	// from the jwks_uri member of Issuer + "/.well-known/openid-configuration".
	JWKSURI string
	// Audiences are the aud values accepted from this issuer: a token must
	// carry at least one. When empty, any aud passes this check (the
	// client check still applies).
	Audiences []string
	// AnyClientAudience accepts a token carrying one of Audiences from
	// every client, whether or not it was issued to the client that
	// presents it: clients can then push each other's tokens. It requires
	// Audiences. Off by default: a token must be issued to the client that
	// presents it (see the package documentation).
	AnyClientAudience bool
	// Algorithms are the JWS algorithms accepted from this issuer, by
	// their JWA names. Empty means RS256, RS384, RS512, PS256, PS384,
	// PS512, ES256, ES384, ES512, EdDSA and Ed25519. "none" and the HMAC
	// algorithms are refused.
	Algorithms []string
}

// Options tune a Verifier. The zero value is usable.
type Options struct {
	// HTTPClient fetches discovery documents and key sets. The default has
	// a 10 s timeout. Redirects from https to http are refused either way.
	HTTPClient *http.Client
	// Now is the clock for token times and for the refresh rate limit.
	// The default is time.Now.
	Now func() time.Time
	// Leeway is the clock skew allowed on exp, nbf and iat. The default is
	// 30 s; a negative value means none.
	Leeway time.Duration
	// MinRefreshInterval is the least time between two on-demand fetches
	// of one issuer's keys (for an unknown kid) after a successful fetch;
	// after a failed one it is KeysRetryInterval. The default is 30 s.
	MinRefreshInterval time.Duration
	// RefreshInterval is how often each key set is fetched again in the
	// background. The default is 15 min.
	RefreshInterval time.Duration
	// Logger receives fetch failures and key refreshes. The default
	// discards them.
	Logger *zap.Logger
}

const (
	defaultHTTPTimeout        = 10 * time.Second
	defaultLeeway             = 30 * time.Second
	defaultMinRefreshInterval = 30 * time.Second
	defaultRefreshInterval    = 15 * time.Minute
)

// Claims are the claims of a verified token.
type Claims struct {
	// Issuer is the token's iss, the configured issuer.
	Issuer string
	// Subject is the token's sub (empty if a plain JWT has none).
	Subject string
	// Expiry is the token's exp.
	Expiry time.Time
	// Values holds every claim of the token as decoded by encoding/json
	// (strings, float64 numbers, bools, []any, map[string]any).
	Values map[string]any
}

// Verifier verifies claim tokens against the trusted issuers. It is safe
// for concurrent use.
type Verifier struct {
	issuers map[string]*issuerKeys
	ordered []*issuerKeys
	now     func() time.Time
	leeway  time.Duration
	log     *zap.Logger

	// verified are the tokens whose signature verified (verified.go).
	verified verified.Tokens[*verifiedToken]

	ctx       context.Context // canceled by Close
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// NewVerifier returns a verifier of tokens from issuers. It fails only on
// bad configuration (an invalid URL or algorithm, a duplicate issuer); an
// issuer that cannot be reached is retried later. Fetching keys starts in
// the background at once. ctx bounds the verifier's background work, as
// does Close.
func NewVerifier(ctx context.Context, issuers []Issuer, opts Options) (*Verifier, error) {
	if len(issuers) == 0 {
		return nil, errors.New("claimtoken: no trusted issuers")
	}
	opts = opts.withDefaults()
	httpClient := jwk.WrapHTTPClientDefaults(opts.HTTPClient)

	vctx, cancel := context.WithCancel(ctx)
	v := &Verifier{
		issuers: make(map[string]*issuerKeys, len(issuers)),
		now:     opts.Now,
		leeway:  opts.Leeway,
		log:     opts.Logger,
		ctx:     vctx,
		cancel:  cancel,
	}
	fail := func(err error) (*Verifier, error) {
		cancel()
		v.shutdown()
		return nil, err
	}
	for i, iss := range issuers {
		cfg, err := normalizeIssuer(iss)
		if err != nil {
			return fail(fmt.Errorf("claimtoken: trusted issuer #%d: %w", i+1, err))
		}
		if _, dup := v.issuers[cfg.Issuer]; dup {
			return fail(fmt.Errorf("claimtoken: issuer %q is listed twice", cfg.Issuer))
		}
		if u, _ := url.Parse(cfg.Issuer); u.Scheme != "https" && !urlcheck.Loopback(u.Hostname()) {
			opts.Logger.Warn("trusted claim token issuer does not use https", zap.String("issuer", cfg.Issuer))
		}
		ik, err := newIssuerKeys(vctx, cfg, opts, httpClient)
		if err != nil {
			return fail(fmt.Errorf("claimtoken: issuer %q: %w", cfg.Issuer, err))
		}
		v.issuers[cfg.Issuer] = ik
		v.ordered = append(v.ordered, ik)
	}
	for _, ik := range v.ordered {
		v.wg.Go(func() { ik.keys.Refresh(vctx) })
	}
	return v, nil
}

func (o Options) withDefaults() Options {
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: defaultHTTPTimeout}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	switch {
	case o.Leeway == 0:
		o.Leeway = defaultLeeway
	case o.Leeway < 0:
		o.Leeway = 0
	}
	if o.MinRefreshInterval <= 0 {
		o.MinRefreshInterval = defaultMinRefreshInterval
	}
	if o.RefreshInterval <= 0 {
		o.RefreshInterval = defaultRefreshInterval
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	return o
}

// issuerConfig is an Issuer checked and with defaults applied.
type issuerConfig struct {
	Issuer            string
	JWKSURI           string
	Audiences         []string
	AnyClientAudience bool
	Algorithms        map[string]bool
}

// CheckIssuer reports what NewVerifier would refuse in iss: an invalid
// URL or algorithm, an empty audience, AnyClientAudience without
// Audiences. It fetches nothing.
func CheckIssuer(iss Issuer) error {
	_, err := normalizeIssuer(iss)
	return err
}

func normalizeIssuer(iss Issuer) (issuerConfig, error) {
	cfg := issuerConfig{Issuer: iss.Issuer, JWKSURI: iss.JWKSURI, AnyClientAudience: iss.AnyClientAudience, Algorithms: map[string]bool{}}
	if err := urlcheck.Absolute(iss.Issuer, false); err != nil {
		return cfg, fmt.Errorf("issuer %q: %w", iss.Issuer, err)
	}
	if iss.JWKSURI != "" {
		if err := urlcheck.Absolute(iss.JWKSURI, true); err != nil {
			return cfg, fmt.Errorf("jwks_uri %q: %w", iss.JWKSURI, err)
		}
	}
	for _, a := range iss.Audiences {
		if a == "" {
			return cfg, fmt.Errorf("issuer %q: empty audience", iss.Issuer)
		}
		cfg.Audiences = append(cfg.Audiences, a)
	}
	if cfg.AnyClientAudience && len(cfg.Audiences) == 0 {
		return cfg, fmt.Errorf("issuer %q: any_client_audience needs the audiences it accepts from every client: add audience <aud...>", iss.Issuer)
	}
	algs := iss.Algorithms
	if len(algs) == 0 {
		algs = defaultAlgorithms
	}
	for _, name := range algs {
		alg, ok := jwa.LookupSignatureAlgorithm(name)
		if !ok {
			return cfg, fmt.Errorf("issuer %q: unknown signing algorithm %q", iss.Issuer, name)
		}
		if alg == jwa.NoSignature() || alg.IsSymmetric() {
			return cfg, fmt.Errorf("issuer %q: signing algorithm %q is not allowed for claim tokens", iss.Issuer, name)
		}
		cfg.Algorithms[alg.String()] = true
	}
	return cfg, nil
}

// Verify checks token, a claim token of the given format presented by the
// client whose id is client, and returns its claims. The token must have
// been issued to that client (see the package documentation), unless its
// issuer has AnyClientAudience. The error matches one of the Err*
// sentinels; when ctx ends while keys are being fetched, it matches
// ErrKeysUnavailable and wraps ctx's error.
func (v *Verifier) Verify(ctx context.Context, format, token, client string) (Claims, error) {
	idToken := false
	switch format {
	case FormatIDToken, formatIDTokenHTTPS:
		idToken = true
	case FormatJWT:
	default:
		return Claims{}, fmt.Errorf("%w: %s (supported: %s, %s)", ErrUnsupportedFormat, quote(format), FormatIDToken, FormatJWT)
	}

	var sum verified.Sum
	if len(token) <= MaxTokenSize {
		sum = verified.Of(token)
	}
	if kept, ok := v.verified.Get(sum, v.now()); ok {
		key, err := kept.ik.keyFor(ctx, kept.tok)
		if err != nil {
			return Claims{}, err
		}
		if sameKey(key, kept.key) {
			return v.check(idToken, kept.ik, kept.tok, kept.parsed, client)
		}
	}
	tok, err := parseCompact(token)
	if err != nil {
		return Claims{}, err
	}
	iss, ok := tok.claims["iss"].(string)
	if !ok || iss == "" {
		return Claims{}, fmt.Errorf("%w: no iss claim (a string)", ErrMalformed)
	}
	ik, ok := v.issuers[iss]
	if !ok {
		return Claims{}, fmt.Errorf("%w: token issuer %s is not trusted", ErrUntrustedIssuer, quote(iss))
	}
	if !ik.cfg.Algorithms[tok.alg] {
		return Claims{}, fmt.Errorf("%w: signing algorithm %s is not accepted from issuer %q", ErrSignature, quote(tok.alg), iss)
	}

	key, err := ik.keyFor(ctx, tok)
	if err != nil {
		return Claims{}, err
	}
	alg, _ := jwa.LookupSignatureAlgorithm(tok.alg)
	// WithKey with no suboptions takes jwx's fast path, which also refuses
	// a header alg other than alg and any "crit" or "b64" header.
	parsed, err := jwt.ParseString(tok.compact, jwt.WithKey(alg, key), jwt.WithValidate(false))
	if err != nil {
		if errors.Is(err, jws.VerifyError()) {
			v.log.Debug("claim token signature does not verify", zap.String("issuer", iss), zap.String("kid", tok.kid), zap.Error(err))
			if !tok.hasKid {
				return Claims{}, fmt.Errorf("%w: it does not verify under the signing key of issuer %q", ErrSignature, iss)
			}
			return Claims{}, fmt.Errorf("%w: it does not verify under the key %s of issuer %q", ErrSignature, quote(tok.kid), iss)
		}
		return Claims{}, fmt.Errorf("%w: claims cannot be decoded", ErrMalformed)
	}
	claims, err := v.check(idToken, ik, tok, parsed, client)
	if err == nil {
		// Kept once every check passed (so it is at most MaxTokenSize,
		// and sum is its own): a token refused for its claims (an expired
		// one, another client's) is checked again in full.
		exp, _ := parsed.Expiration()
		v.verified.Put(sum, &verifiedToken{ik: ik, tok: tok, key: key, parsed: parsed}, exp.Add(v.leeway))
	}
	return claims, err
}

// check makes the checks of Verify that follow the signature's (see the
// package documentation) of tok, parsed: the required claims, the time
// claims against the clock, the issuer, the audiences and the client it
// was issued to; and returns its claims.
func (v *Verifier) check(idToken bool, ik *issuerKeys, tok compactToken, parsed jwt.Token, client string) (Claims, error) {
	iss := ik.cfg.Issuer
	required := []string{jwt.ExpirationKey}
	if idToken {
		// OpenID Connect Core §2.
		required = append(required, jwt.IssuedAtKey, jwt.SubjectKey)
	}
	for _, c := range required {
		if !parsed.Has(c) {
			return Claims{}, fmt.Errorf("%w: required claim %q is missing", ErrMalformed, c)
		}
	}
	err := jwt.Validate(parsed,
		jwt.WithClock(jwt.ClockFunc(v.now)),
		jwt.WithAcceptableSkew(v.leeway),
		jwt.WithIssuer(ik.cfg.Issuer),
	)
	if err != nil {
		return Claims{}, validationError(err, parsed, iss)
	}

	aud, _ := parsed.Audience()
	if accepted := ik.cfg.Audiences; len(accepted) > 0 && !slices.ContainsFunc(aud, func(a string) bool { return slices.Contains(accepted, a) }) {
		return Claims{}, fmt.Errorf("%w: its aud does not include any audience accepted for issuer %q", ErrAudience, iss)
	}
	if !ik.cfg.AnyClientAudience {
		if err := issuedTo(aud, tok.claims, client); err != nil {
			return Claims{}, err
		}
	}

	sub, _ := parsed.Subject()
	exp, _ := parsed.Expiration()
	return Claims{Issuer: ik.cfg.Issuer, Subject: sub, Expiry: exp, Values: maps.Clone(tok.claims)}, nil
}

// issuedTo checks that a token with audiences aud and claims was issued to
// client, as OpenID Connect Core 1.0 section 3.1.3.7 steps 3 to 5 ask.
func issuedTo(aud []string, claims map[string]any, client string) error {
	if client == "" || !slices.Contains(aud, client) {
		return fmt.Errorf("%w: its aud does not include the client %s", ErrNotForClient, quote(client))
	}
	azp, has := claims["azp"]
	if !has {
		if len(aud) > 1 {
			return fmt.Errorf("%w: it has several audiences and no azp naming the client %s", ErrNotForClient, quote(client))
		}
		return nil
	}
	if s, _ := azp.(string); s != client {
		return fmt.Errorf("%w: its azp names another party than the client %s", ErrNotForClient, quote(client))
	}
	return nil
}

// validationError maps a jwt.Validate error onto the sentinels.
func validationError(err error, tok jwt.Token, iss string) error {
	stamp := func(t time.Time, _ bool) string { return t.UTC().Format(time.RFC3339) }
	switch {
	case errors.Is(err, jwt.TokenExpiredError()):
		return fmt.Errorf("%w: exp %s is past", ErrExpired, stamp(tok.Expiration()))
	case errors.Is(err, jwt.TokenNotYetValidError()):
		return fmt.Errorf("%w: nbf %s is in the future", ErrNotYetValid, stamp(tok.NotBefore()))
	case errors.Is(err, jwt.InvalidIssuedAtError()):
		return fmt.Errorf("%w: iat %s is in the future", ErrNotYetValid, stamp(tok.IssuedAt()))
	case errors.Is(err, jwt.InvalidIssuerError()):
		return fmt.Errorf("%w: token issuer is not exactly %q", ErrUntrustedIssuer, iss)
	}
	return fmt.Errorf("%w: its claims are not valid", ErrMalformed)
}

// compactToken is a claim token split up before verification.
type compactToken struct {
	compact string
	alg     string
	kid     string
	hasKid  bool
	claims  map[string]any // unverified until the signature checks out
}

// parseCompact splits a compact JWS and decodes its header and claims,
// without verifying anything.
func parseCompact(token string) (compactToken, error) {
	token = strings.TrimSpace(token)
	switch {
	case token == "":
		return compactToken{}, fmt.Errorf("%w: it is empty", ErrMalformed)
	case len(token) > MaxTokenSize:
		return compactToken{}, fmt.Errorf("%w: it is longer than %d bytes", ErrMalformed, MaxTokenSize)
	}
	parts := strings.Split(token, ".")
	switch len(parts) {
	case 3:
	case 5:
		return compactToken{}, fmt.Errorf("%w: encrypted tokens (JWE) are not supported", ErrMalformed)
	default:
		return compactToken{}, fmt.Errorf("%w: it is not a signed JWT in compact form (header.payload.signature)", ErrMalformed)
	}

	// jku, x5u and the like are ignored: keys come only from the
	// issuer's configured or discovered key set.
	var hdr struct {
		Alg  *string         `json:"alg"`
		Kid  *string         `json:"kid"`
		Crit json.RawMessage `json:"crit"`
	}
	if err := decodePart(parts[0], &hdr); err != nil {
		return compactToken{}, fmt.Errorf("%w: its header cannot be decoded", ErrMalformed)
	}
	if hdr.Alg == nil || *hdr.Alg == "" {
		return compactToken{}, fmt.Errorf("%w: its header has no alg", ErrMalformed)
	}
	if strings.EqualFold(*hdr.Alg, "none") {
		return compactToken{}, fmt.Errorf("%w (alg %s)", ErrUnsigned, quote(*hdr.Alg))
	}
	if parts[2] == "" {
		return compactToken{}, fmt.Errorf("%w (the signature is empty)", ErrUnsigned)
	}
	if hdr.Crit != nil {
		// No extension is understood (RFC 7515 §4.1.11).
		return compactToken{}, fmt.Errorf("%w: its header requires extensions (crit) that are not supported", ErrMalformed)
	}
	tok := compactToken{compact: token, alg: *hdr.Alg}
	if hdr.Kid != nil {
		tok.kid, tok.hasKid = *hdr.Kid, true
	}
	if err := decodePart(parts[1], &tok.claims); err != nil || tok.claims == nil {
		return compactToken{}, fmt.Errorf("%w: its payload is not a base64url-encoded JSON object", ErrMalformed)
	}
	return tok, nil
}

func decodePart(s string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// quote quotes a value taken from a token for an error message, cut to a
// sane length.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return fmt.Sprintf("%q…", s[:cut])
	}
	return fmt.Sprintf("%q", s)
}

// Close stops the background refreshes. Verify keeps working with the keys
// fetched so far, but fetches no more.
func (v *Verifier) Close() error {
	v.closeOnce.Do(func() {
		v.cancel()
		v.wg.Wait()
		v.closeErr = v.shutdown()
	})
	return v.closeErr
}

func (v *Verifier) shutdown() error {
	var errs []error
	for _, ik := range v.ordered {
		if err := ik.close(); err != nil {
			errs = append(errs, fmt.Errorf("stopping key refresh of %q: %w", ik.cfg.Issuer, err))
		}
	}
	return errors.Join(errs...)
}

// Unverified is what a token says of itself before it is verified: enough
// to choose how to verify it, never to trust it.
type Unverified struct {
	// Issuer is the token's iss claim.
	Issuer string
	// IssuedTo is the client the token says it was issued to: its azp
	// claim, or else its only audience; empty when it names none or
	// several.
	IssuedTo string
}

// Peek reads the iss, azp and aud claims of a compact JWS without verifying
// anything (ErrMalformed, ErrUnsigned when it is no signed JWT). A caller
// uses them only to choose the issuer and client that Verify then checks.
func Peek(token string) (Unverified, error) {
	tok, err := parseCompact(token)
	if err != nil {
		return Unverified{}, err
	}
	var u Unverified
	u.Issuer, _ = tok.claims["iss"].(string)
	if azp, ok := tok.claims["azp"].(string); ok {
		u.IssuedTo = azp
		return u, nil
	}
	switch aud := tok.claims["aud"].(type) {
	case string:
		u.IssuedTo = aud
	case []any:
		if len(aud) == 1 {
			u.IssuedTo, _ = aud[0].(string)
		}
	}
	return u, nil
}
