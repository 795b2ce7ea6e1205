// Package redisconn turns the operator's Redis settings into asynq and go-redis connection
// options: a redis:// or rediss:// URL (password in the URL, TLS for rediss), a
// redis-sentinel:// URL, or a list of Redis Cluster node addresses.
package redisconn

import (
	"crypto/tls"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// DefaultURL is the Redis used when nothing is configured.
const DefaultURL = "redis://127.0.0.1:6379/0"

// Parse returns connection options. clusterAddrs, when non-empty, is a comma-separated list
// of cluster nodes (host:port) and wins over rawURL, whose password and TLS scheme still
// apply. rawURL forms:
//
//	redis://[:password@]host:port[/db]
//	rediss://[:password@]host:port[/db]                        (TLS)
//	redis-sentinel://[:password@]host:port[,host:port...][/db]?master=NAME
func Parse(rawURL, clusterAddrs string) (asynq.RedisConnOpt, error) {
	if rawURL == "" {
		rawURL = DefaultURL
	}
	if strings.TrimSpace(clusterAddrs) != "" {
		var addrs []string
		for _, a := range strings.Split(clusterAddrs, ",") {
			if a = strings.TrimSpace(a); a != "" {
				addrs = append(addrs, a)
			}
		}
		opt := asynq.RedisClusterClientOpt{Addrs: addrs}
		if u, err := url.Parse(rawURL); err == nil {
			if p, ok := u.User.Password(); ok {
				opt.Password = p
			}
			if u.Scheme == "rediss" {
				opt.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
			}
		}
		return opt, nil
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: not a URL (want redis://host:port/db, rediss://… or redis-sentinel://…)")
	}
	switch u.Scheme {
	case "redis", "rediss", "redis-sentinel":
	default:
		return nil, fmt.Errorf("REDIS_URL: scheme %q not supported (want redis, rediss or redis-sentinel)", u.Scheme)
	}
	opt, err := asynq.ParseRedisURI(rawURL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL %s: %v", Redact(rawURL), strings.TrimPrefix(err.Error(), "asynq: "))
	}
	if o, ok := opt.(asynq.RedisFailoverClientOpt); ok {
		// asynq's parser ignores the database in a sentinel URL.
		if db := strings.Trim(u.Path, "/"); db != "" {
			n, err := strconv.Atoi(db)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("REDIS_URL: database number should be the first segment of the path, got %q", db)
			}
			o.DB = n
		}
		opt = o
	}
	if o, ok := opt.(asynq.RedisClientOpt); ok && u.Scheme == "rediss" {
		o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: u.Hostname()}
		opt = o
	}
	return opt, nil
}

// Client opens a go-redis client for opt; the caller closes it.
func Client(opt asynq.RedisConnOpt) redis.UniversalClient {
	return opt.MakeRedisClient().(redis.UniversalClient)
}

// Redact returns rawURL with any password replaced, for logs and errors.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparseable URL)"
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}
