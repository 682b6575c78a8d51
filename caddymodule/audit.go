package caddymodule

import (
	"net/http"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-uma/caddy-uma/authz/pep"
)

// The audit trail is written by one logger, named uma.audit, at info level:
// a line "token request" for every answer of the token endpoint (see
// package authz/audit) and a line "protected request" for every
// decision of a uma_protect handler. Operators route it with Caddy's log
// directive (include uma.audit), and keep it out of another log with
// exclude uma.audit. It never holds a token, a ticket or a secret.
const auditLoggerName = "uma.audit"

// auditLog stands for the audit trail where Caddy wants a module to name a
// logger: it is not registered, and has no configuration.
type auditLog struct{}

// CaddyModule names the audit logger.
func (auditLog) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: auditLoggerName}
}

// auditLogger returns the audit trail's logger of a config: the config's
// logs that include uma.audit (or everything) receive its lines.
func auditLogger(ctx caddy.Context) *zap.Logger { return ctx.Logger(auditLog{}) }

// auditEnforcement writes the audit line of one decision of uma_protect:
//
//	reason            the outcome (pep.Reason: authorized, no_token, ...)
//	allowed, status   whether the request went on, and the status of a refusal
//	method, path      the request's method and path (never its query)
//	owner, resource_id the resource it mapped to, when it did
//	requested         the scopes it needs on the resource
//	requesting_party, client_id, granted
//	                  of an authorized request: the RPT's subject and
//	                  client, and what it grants on the resource
func auditEnforcement(log *zap.Logger, r *http.Request, d pep.Decision) {
	c := log.Check(zapcore.InfoLevel, "protected request")
	if c == nil {
		return
	}
	fields := make([]zapcore.Field, 0, 11)
	fields = append(fields,
		zap.String("reason", string(d.Reason)),
		zap.Bool("allowed", d.Allow),
	)
	if d.Status != 0 {
		fields = append(fields, zap.Int("status", d.Status))
	}
	fields = append(fields, zap.String("method", r.Method), zap.String("path", r.URL.Path))
	if d.ResourceID != "" || d.Owner != "" {
		fields = append(fields, zap.String("owner", d.Owner), zap.String("resource_id", d.ResourceID))
	}
	if d.Needed != nil {
		fields = append(fields, zap.Strings("requested", d.Needed))
	}
	if d.Authorized {
		fields = append(fields,
			zap.String("requesting_party", d.Subject),
			zap.String("client_id", d.ClientID),
			zap.Strings("granted", d.Scopes))
	}
	c.Write(fields...)
}

// Interface guards
var _ caddy.Module = auditLog{}
