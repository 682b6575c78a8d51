// Package owners keeps the resource owners' data of the authorization
// server in its store: the shares each owner made and their indexes, the
// access requests sent to owners, the owners' rules (from the operator
// directory and from the owner API) with the compiled rules in force, and
// the history of decisions on each owner's resources. Package authz serves
// it over HTTP and evaluates the rules; this package knows nothing of the
// protocol.
//
// Records are keyed under their owner, so that listing one owner's data
// never crosses owners:
//
//	share    <owner> \x00 <resource_id> \x00 <share_id>
//	request  <owner> \x00 <request_id>
//	policy   <owner> \x00 <rule name>
//	decision <owner> \x00 <reverse timestamp> \x00 <random>
//
// Two indexes serve the console and share revocation (shares.go):
//
//	share_to     sub   \x00 <subject> \x00 <owner> \x00 <resource_id> \x00 <share_id>
//	share_to     email \x00 <address> \x00 <owner> \x00 <resource_id> \x00 <share_id>
//	token_holder <resource_id> \x00 <refresh token key or "rpt:" jti>
package owners

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-uma/caddy-uma/store"
)

// Store namespaces of the owners' data.
const (
	// NamespaceRules holds the rules owners wrote through the owner API;
	// its changes make every node compile the owner's rules again.
	NamespaceRules = "policy"
	// NamespaceRequests holds the access requests sent to owners.
	NamespaceRequests = "request"

	nsShare       = "share"
	nsShareTo     = "share_to"
	nsTokenHolder = "token_holder"
	nsDecision    = "decision"
)

// Options are what the owners' data takes from the authorization server.
type Options struct {
	// Store holds the data; the resources it holds are the owners'.
	Store store.Store
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Log receives what changed (default: nothing).
	Log *zap.Logger
	// ValidName says whether a subject, an e-mail address or a client id
	// may be stored (the AS's rule for subjects). It is required.
	ValidName func(string) bool
}

func (o Options) withDefaults() Options {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	return o
}

// sep separates the parts of a key.
const sep = "\x00"

// listJSON lists the records of a namespace under a prefix, decoded from
// JSON.
func listJSON[T any](ctx context.Context, st store.Records, namespace, prefix string, limit int) ([]T, error) {
	recs, err := st.List(ctx, namespace, prefix, limit)
	if err != nil {
		return nil, fmt.Errorf("listing %s records: %w", namespace, err)
	}
	out := make([]T, 0, len(recs))
	for _, r := range recs {
		var v T
		if err := json.Unmarshal(r.Value, &v); err != nil {
			return nil, fmt.Errorf("decoding a %s record: %w", namespace, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// Log fields, the same as package authz's.
func ownerField(owner string) zap.Field { return zap.String("owner", owner) }
func resourceField(id string) zap.Field { return zap.String("resource_id", id) }
func clientField(id string) zap.Field   { return zap.String("client_id", id) }
