// Package prodstack runs the production topology of deploy/docker-compose.yml
// as local processes, for this machine and for CI, where there is no Docker
// engine: a private redis-server, a private PostgreSQL database (or SQLite),
// every order API and gateway replica the compose file lists, and a real
// nginx whose configuration is rendered from the same template the compose
// nginx uses (deploy/nginx/orderpush.conf.template).
//
// Each replica's settings come from the compose file itself: the same
// variables, node ids and values, with only addresses, the database and the
// secret replaced by local ones. So every run also proves that the binaries
// accept what the compose file gives them. Compose loading and the template
// renderer are exported for the tests that check the compose file
// statically.
//
// Start brings the stack up and Close tears all of it down; a Stack's
// methods are safe for concurrent use.
package prodstack
