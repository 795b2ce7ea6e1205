// Package redisconn turns the operator's Redis settings into asynq and go-redis connection
// options: a redis:// or rediss:// URL (password in the URL, TLS for rediss), a
// redis-sentinel:// URL, or a list of Redis Cluster node addresses.
package redisconn

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// DefaultURL is the Redis used when nothing is configured.
const DefaultURL = "redis://127.0.0.1:6379/0"

// Parse returns connection options. clusterAddrs, when non-empty, is a comma-separated list
// of cluster nodes (host:port) and wins over rawURL, whose user, password and TLS scheme
// still apply. rawURL forms:
//
//	redis://[[user]:password@]host:port[/db]
//	rediss://[[user]:password@]host:port[/db]                  (TLS)
//	redis-sentinel://[:password@]host:port[,host:port...][/db]?master=NAME
//
// A user name is for Redis ACLs; without one Redis checks the password of its default user.
// Errors name the setting and never hold the password.
func Parse(rawURL, clusterAddrs string) (asynq.RedisConnOpt, error) {
	if rawURL == "" {
		rawURL = DefaultURL
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: not a URL (want redis://host:port/db, rediss://… or redis-sentinel://…)")
	}
	if strings.TrimSpace(clusterAddrs) != "" {
		return parseCluster(u, clusterAddrs)
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
		// asynq gives the URL's password to the sentinels only; a master behind Sentinel
		// usually requires the same one (requirepass and sentinel auth-pass).
		if o.Password == "" {
			o.Password = o.SentinelPassword
		}
		opt = o
	}
	if o, ok := opt.(asynq.RedisClientOpt); ok {
		o.Username = u.User.Username() // asynq's parser drops it
		if u.Scheme == "rediss" {
			o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: u.Hostname()}
		}
		opt = o
	}
	return opt, nil
}

// parseCluster reads the node list; u supplies user, password and TLS.
func parseCluster(u *url.URL, clusterAddrs string) (asynq.RedisConnOpt, error) {
	var addrs []string
	for _, a := range strings.Split(clusterAddrs, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		if host, port, err := net.SplitHostPort(a); err != nil || host == "" || port == "" {
			return nil, fmt.Errorf("REDIS_CLUSTER_ADDRS: %q: want host:port", a)
		}
		addrs = append(addrs, a)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("REDIS_CLUSTER_ADDRS %q names no node: want host:port,host:port", clusterAddrs)
	}
	opt := asynq.RedisClusterClientOpt{Addrs: addrs, Username: u.User.Username()}
	if p, ok := u.User.Password(); ok {
		opt.Password = p
	}
	if u.Scheme == "rediss" {
		opt.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
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
