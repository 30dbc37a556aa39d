// Package logging builds the slog logger of both binaries from LOG_LEVEL and
// LOG_FORMAT and names the attribute keys every package uses, so the same
// thing is always logged under the same key.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/redis/go-redis/v9"

	"orderpush/pkg/config"
)

// Attribute keys shared by both services.
const (
	KeyNode     = "node"
	KeyMerchant = "merchant"
	KeyConn     = "conn"
	KeySeq      = "seq"
	KeyOrderNo  = "orderNo"
	KeyErr      = "err"
	KeyAddr     = "addr"
)

// Load reads LOG_LEVEL (debug, info, warn, error) and LOG_FORMAT (json,
// text) and returns a logger writing to w.
func Load(l *config.Loader, w io.Writer) *slog.Logger {
	level := map[string]slog.Level{
		"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError,
	}[l.Enum("LOG_LEVEL", "info", "debug", "info", "warn", "error")]
	opts := &slog.HandlerOptions{Level: level}
	if l.Enum("LOG_FORMAT", "json", "json", "text") == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// Err is the attribute for an error.
func Err(err error) slog.Attr { return slog.Any(KeyErr, err) }

// redisLogger carries go-redis's own log lines (pool dial failures, pub/sub
// reconnects, ...) into slog, so LOG_FORMAT=json output stays one JSON
// object per line. go-redis formats its messages itself; the text goes into
// the "detail" attribute under a fixed message.
type redisLogger struct{ log *slog.Logger }

func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	if ctx == nil {
		ctx = context.Background()
	}
	r.log.LogAttrs(ctx, slog.LevelWarn, "redis client", slog.String("detail", fmt.Sprintf(format, v...)))
}

// RouteRedis sends go-redis's log lines through log. go-redis keeps one
// logger per process (redis.SetLogger), so only main calls this, once.
func RouteRedis(log *slog.Logger) {
	redis.SetLogger(redisLogger{log: log})
}
