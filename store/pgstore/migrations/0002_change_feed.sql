-- The change feed. A change of a record in a watched namespace, and every
-- change of a resource, is announced with NOTIFY by a trigger, in the
-- transaction of the write: listeners get it once the write has committed,
-- in commit order, and never for a write that rolled back.
--
-- NOTIFY serializes the commits of the transactions that use it (one lock
-- for the whole server, held through the commit's flush), so records are
-- announced only in the namespaces that some store watches: a store's
-- Watch registers its namespaces in feed_namespaces, once and for good.
-- Writes elsewhere (single-use tickets, issued tokens) commit in parallel,
-- as before.
--
-- The channel is the schema's: 'uma_changes_' and the first 32 hex digits
-- of the SHA-256 of its name (channelOf in feed.go), so that stores in
-- different schemas of one database do not hear each other. The trigger
-- functions run with the search_path pg_catalog, then this schema, whatever
-- the search_path of the session that writes.
--
-- Payloads (NOTIFY takes less than 8000 bytes):
--   'k' <bytes of the namespace> ':' <namespace> <key>   a record
--   'r' <id>                                             a resource
--   '!'                                                  one that did not fit: resync
-- The store refuses namespaces and keys, and ids, above 2600 bytes, so '!'
-- only comes from writes made by other means. An update that changes a
-- key (the store's never do) notifies the old and the new one. NOTIFY drops
-- a payload repeated within a transaction, so a key is notified once per
-- transaction.
--
-- The background purge of expired records sets caddy_uma.purging for its
-- transaction: expiry is not a change.

CREATE TABLE feed_namespaces (
	namespace text COLLATE "C" PRIMARY KEY,
	since     timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION uma_record_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	payloads text[];
	payload text;
	channel text;
BEGIN
	IF TG_OP = 'DELETE' AND current_setting('caddy_uma.purging', true) = 'on' THEN
		RETURN NULL;
	END IF;
	IF TG_OP <> 'DELETE' AND EXISTS (SELECT 1 FROM feed_namespaces WHERE namespace = NEW.namespace) THEN
		payloads := ARRAY['k' || octet_length(NEW.namespace) || ':' || NEW.namespace || NEW.key];
	END IF;
	-- The old key, unless an update keeps it (the store's always do).
	IF (TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND (OLD.namespace <> NEW.namespace OR OLD.key <> NEW.key)))
		AND EXISTS (SELECT 1 FROM feed_namespaces WHERE namespace = OLD.namespace) THEN
		payloads := payloads || ('k' || octet_length(OLD.namespace) || ':' || OLD.namespace || OLD.key);
	END IF;
	IF payloads IS NULL THEN
		RETURN NULL;
	END IF;
	channel := 'uma_changes_' || left(encode(sha256(convert_to(TG_TABLE_SCHEMA, 'UTF8')), 'hex'), 32);
	FOREACH payload IN ARRAY payloads LOOP
		PERFORM pg_notify(channel, CASE WHEN octet_length(payload) < 8000 THEN payload ELSE '!' END);
	END LOOP;
	RETURN NULL;
END $$;

CREATE FUNCTION uma_resource_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	channel text := 'uma_changes_' || left(encode(sha256(convert_to(TG_TABLE_SCHEMA, 'UTF8')), 'hex'), 32);
	payload text;
BEGIN
	IF TG_OP <> 'INSERT' THEN
		payload := 'r' || OLD.id;
		PERFORM pg_notify(channel, CASE WHEN octet_length(payload) < 8000 THEN payload ELSE '!' END);
	END IF;
	IF TG_OP <> 'DELETE' THEN
		payload := 'r' || NEW.id;
		PERFORM pg_notify(channel, CASE WHEN octet_length(payload) < 8000 THEN payload ELSE '!' END);
	END IF;
	RETURN NULL;
END $$;

DO $$ BEGIN
	EXECUTE format('ALTER FUNCTION uma_record_changed() SET search_path = pg_catalog, %I', current_schema());
	EXECUTE format('ALTER FUNCTION uma_resource_changed() SET search_path = pg_catalog, %I', current_schema());
END $$;

CREATE TRIGGER records_changed AFTER INSERT OR UPDATE OR DELETE ON records
	FOR EACH ROW EXECUTE FUNCTION uma_record_changed();
CREATE TRIGGER resources_changed AFTER INSERT OR UPDATE OR DELETE ON resources
	FOR EACH ROW EXECUTE FUNCTION uma_resource_changed();
