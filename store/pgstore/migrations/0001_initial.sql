-- The first schema of caddy-uma's PostgreSQL store. Identifiers and keys
-- are compared byte by byte (collation "C"), as Go compares strings: the
-- order of ListResources and List.

-- Resource descriptions, with an index per query of ListResources: by
-- resource server, by owner, by both, each ordered by id.
CREATE TABLE resources (
	id              text COLLATE "C" PRIMARY KEY,
	resource_server text COLLATE "C" NOT NULL,
	owner           text COLLATE "C" NOT NULL,
	name            text NOT NULL,
	type            text NOT NULL,
	description     text NOT NULL,
	icon_uri        text NOT NULL,
	scopes          text[] NOT NULL,
	uris            text[] NOT NULL,
	created_at      timestamptz NOT NULL,
	updated_at      timestamptz NOT NULL
);
CREATE INDEX resources_by_server ON resources (resource_server, id);
CREATE INDEX resources_by_owner ON resources (owner, id);
CREATE INDEX resources_by_both ON resources (resource_server, owner, id);

-- Records: opaque values under a namespace and a key. expires_at is NULL
-- for a record that never expires; a record is live while expires_at is
-- after the reading node's clock. Expired rows are purged in the
-- background, through the partial index on expires_at.
CREATE TABLE records (
	namespace  text COLLATE "C" NOT NULL,
	key        text COLLATE "C" NOT NULL,
	value      bytea NOT NULL,
	expires_at timestamptz,
	PRIMARY KEY (namespace, key)
);
CREATE INDEX records_by_expiry ON records (expires_at) WHERE expires_at IS NOT NULL;
