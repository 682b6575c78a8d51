package authz

import (
	"strings"

	"go.uber.org/zap"
)

// Log fields. Tokens and secrets are never logged.
func clientField(id string) zap.Field           { return zap.String("client_id", id) }
func scopeField(s []string) zap.Field           { return zap.String("scope", strings.Join(s, " ")) }
func ownerField(owner string) zap.Field         { return zap.String("owner", owner) }
func resourceField(id string) zap.Field         { return zap.String("resource_id", id) }
func requestingPartyField(sub string) zap.Field { return zap.String("requesting_party", sub) }
