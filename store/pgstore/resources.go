package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caddy-uma/caddy-uma/store"
)

// errEmptyID is returned for a resource without an ID.
var errEmptyID = errors.New("resource id is empty")

// resourceColumns are the columns of a resource, in the order of
// resourceArgs and scanResource.
const resourceColumns = `id, resource_server, owner, name, type, description, icon_uri, scopes, uris, created_at, updated_at`

// checkResource checks what PostgreSQL can store of r.
func checkResource(r store.Resource) error {
	if r.ID == "" {
		return errEmptyID
	}
	if err := checkIndexed(fmt.Sprintf("resource %q: id, resource server and owner", r.ID), r.ID, r.ResourceServer, r.Owner); err != nil {
		return err
	}
	texts := append([]string{r.Name, r.Type, r.Description, r.IconURI}, r.Scopes...)
	for _, t := range append(texts, r.URIs...) {
		if err := checkText(fmt.Sprintf("resource %q", r.ID), t); err != nil {
			return err
		}
	}
	return nil
}

// resourceArgs are the parameters $1... of r's columns.
func resourceArgs(r store.Resource) []any {
	return []any{r.ID, r.ResourceServer, r.Owner, r.Name, r.Type, r.Description, r.IconURI,
		textArray(r.Scopes), textArray(r.URIs), r.CreatedAt, r.UpdatedAt}
}

// textArray is a slice as a text[] parameter: pgx sends a nil slice as NULL.
func textArray(list []string) []string {
	if list == nil {
		return []string{}
	}
	return list
}

func scanResource(row pgx.CollectableRow) (store.Resource, error) {
	var r store.Resource
	err := row.Scan(&r.ID, &r.ResourceServer, &r.Owner, &r.Name, &r.Type, &r.Description, &r.IconURI,
		&r.Scopes, &r.URIs, &r.CreatedAt, &r.UpdatedAt)
	return r, err
}

// CreateResource stores a new resource. It returns store.ErrExists if a
// resource with the same ID exists (a unique violation of the primary key,
// also when another node creates it at the same moment).
func (s *Store) CreateResource(ctx context.Context, r store.Resource) error {
	return s.execResource(ctx, "creating resource", r.ID, checkResource(r), `INSERT INTO resources (`+resourceColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`, resourceArgs(r)...)
}

// GetResource returns the resource with the given ID, or store.ErrNotFound.
func (s *Store) GetResource(ctx context.Context, id string) (store.Resource, error) {
	const op = "getting resource"
	if err := checkText("resource id", id); err != nil {
		return store.Resource{}, wrap(op, err)
	}
	ctx, leave, err := s.enter(ctx)
	if err != nil {
		return store.Resource{}, wrap(op, err)
	}
	defer leave()
	rows, err := s.pool.Query(ctx, `SELECT `+resourceColumns+` FROM resources WHERE id = $1`, id)
	if err == nil {
		var r store.Resource
		r, err = pgx.CollectExactlyOneRow(rows, scanResource)
		if err == nil {
			return r, nil
		}
	}
	if errors.Is(err, pgx.ErrNoRows) {
		err = store.ErrNotFound
	}
	return store.Resource{}, wrap(op, fmt.Errorf("%q: %w", id, err))
}

// updateResource is the UPDATE of a resource with the parameters of
// resourceArgs.
const updateResource = `UPDATE resources SET
	resource_server = $2, owner = $3, name = $4, type = $5, description = $6, icon_uri = $7,
	scopes = $8, uris = $9, created_at = $10, updated_at = $11
	WHERE id = $1`

// UpdateResource replaces the resource with r.ID, or returns
// store.ErrNotFound. The indexes follow the row.
func (s *Store) UpdateResource(ctx context.Context, r store.Resource) error {
	return s.execResource(ctx, "updating resource", r.ID, checkResource(r), updateResource, resourceArgs(r)...)
}

// SwapResource replaces the resource with r.ID as UpdateResource does, only
// if its stored updated_at equals prevUpdatedAt, and returns
// store.ErrConflict otherwise, or store.ErrNotFound. PostgreSQL keeps
// microseconds: both times lose their nanoseconds (pgx truncates a
// time.Time to the microsecond), and r.UpdatedAt must be after
// prevUpdatedAt at that precision. One statement: the UPDATE compares the
// version in its WHERE, so of concurrent swaps from one version, on any
// nodes, the first to commit wins and the others find the new version.
func (s *Store) SwapResource(ctx context.Context, r store.Resource, prevUpdatedAt time.Time) error {
	const op = "swapping resource"
	if err := checkResource(r); err != nil {
		return wrap(op, err)
	}
	if !r.UpdatedAt.Truncate(time.Microsecond).After(prevUpdatedAt.Truncate(time.Microsecond)) {
		return wrap(op, fmt.Errorf("%q: %w", r.ID, store.ErrUnchangedVersion))
	}
	ctx, leave, err := s.enter(ctx)
	if err != nil {
		return wrap(op, err)
	}
	defer leave()
	var swapped, exists bool
	err = s.pool.QueryRow(ctx, `WITH swapped AS (`+updateResource+` AND updated_at = $12 RETURNING 1)
		SELECT EXISTS (SELECT 1 FROM swapped), EXISTS (SELECT 1 FROM resources WHERE id = $1)`,
		append(resourceArgs(r), prevUpdatedAt)...).Scan(&swapped, &exists)
	switch {
	case err != nil:
		err = mapError(err)
	case !exists:
		err = store.ErrNotFound
	case !swapped:
		err = store.ErrConflict
	}
	if err != nil {
		return wrap(op, fmt.Errorf("%q: %w", r.ID, err))
	}
	return nil
}

// DeleteResource removes the resource, or returns store.ErrNotFound.
func (s *Store) DeleteResource(ctx context.Context, id string) error {
	return s.execResource(ctx, "deleting resource", id, checkText("resource id", id),
		`DELETE FROM resources WHERE id = $1`, id)
}

// execResource runs one statement that changes the resource id, unless
// invalid (the result of its checks) is not nil, and returns
// store.ErrNotFound if it changed no row.
func (s *Store) execResource(ctx context.Context, op, id string, invalid error, query string, args ...any) error {
	if invalid != nil {
		return wrap(op, invalid)
	}
	if err := s.exec(ctx, store.ErrNotFound, query, args...); err != nil {
		return wrap(op, fmt.Errorf("%q: %w", id, err))
	}
	return nil
}

// ListResources returns the resources matching q, sorted by ID in byte
// order, through the index of the query (see store.ResourceQuery; the
// primary key for an empty query), in one statement's snapshot. A name is
// looked up by its MD5, as the indexes hold it, and then compared.
func (s *Store) ListResources(ctx context.Context, q store.ResourceQuery) ([]store.Resource, error) {
	const op = "listing resources"
	if err := checkIndexed("resource query", q.ResourceServer, q.Owner, q.After); err != nil {
		return nil, wrap(op, err)
	}
	if err := checkText("resource query", q.Name); err != nil {
		return nil, wrap(op, err)
	}
	ctx, leave, err := s.enter(ctx)
	if err != nil {
		return nil, wrap(op, err)
	}
	defer leave()
	query, args := listQuery(q)
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, wrap(op, err)
	}
	list, err := pgx.CollectRows(rows, scanResource)
	if err != nil {
		return nil, wrap(op, err)
	}
	if len(list) == 0 {
		return nil, nil
	}
	return list, nil
}

// listQuery is the statement of ListResources and its parameters.
func listQuery(q store.ResourceQuery) (string, []any) {
	var where []string
	var args []any
	cond := func(c string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(c, "$", fmt.Sprintf("$%d", len(args))))
	}
	if q.ResourceServer != "" {
		cond("resource_server = $", q.ResourceServer)
	}
	if q.Owner != "" {
		cond("owner = $", q.Owner)
	}
	if q.Name != "" {
		cond("md5(name) = md5($::text)", q.Name)
		where = append(where, fmt.Sprintf("name = $%d", len(args)))
	}
	if q.After != "" {
		cond("id > $", q.After)
	}
	query := `SELECT ` + resourceColumns + ` FROM resources`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	query += ` ORDER BY id`
	if q.Limit > 0 {
		query += fmt.Sprintf(" LIMIT %d", q.Limit)
	}
	return query, args
}
