-- Lookups of resources by name (ListResources with a Name): at a resource
-- server, and of one owner there, each ordered by id for pages. The name
-- is indexed by its MD5 (not for secrecy: to keep index entries small
-- whatever the name's length, under the B-tree's limit); a query compares
-- the hash through the index, then the name itself.
CREATE INDEX resources_by_name ON resources (resource_server, md5(name), id);
CREATE INDEX resources_by_owner_name ON resources (resource_server, owner, md5(name), id);
