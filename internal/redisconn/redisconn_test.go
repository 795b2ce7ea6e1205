package redisconn

import (
	"strings"
	"testing"

	"github.com/hibiken/asynq"
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, url, cluster string
		check              func(t *testing.T, o asynq.RedisConnOpt)
		wantErr            string
	}{
		{name: "default", check: func(t *testing.T, o asynq.RedisConnOpt) {
			c := o.(asynq.RedisClientOpt)
			if c.Addr != "127.0.0.1:6379" || c.DB != 0 {
				t.Errorf("got %+v", c)
			}
		}},
		{name: "password and db", url: "redis://:s3cret@redis:6380/2", check: func(t *testing.T, o asynq.RedisConnOpt) {
			c := o.(asynq.RedisClientOpt)
			if c.Addr != "redis:6380" || c.DB != 2 || c.Password != "s3cret" || c.TLSConfig != nil {
				t.Errorf("got %+v", c)
			}
		}},
		{name: "tls", url: "rediss://cache.example:6380/0", check: func(t *testing.T, o asynq.RedisConnOpt) {
			c := o.(asynq.RedisClientOpt)
			if c.TLSConfig == nil || c.TLSConfig.ServerName != "cache.example" {
				t.Errorf("no TLS config: %+v", c)
			}
		}},
		{name: "sentinel", url: "redis-sentinel://:pw@s1:26379,s2:26379/1?master=mymaster", check: func(t *testing.T, o asynq.RedisConnOpt) {
			c := o.(asynq.RedisFailoverClientOpt)
			if c.MasterName != "mymaster" || len(c.SentinelAddrs) != 2 || c.DB != 1 || c.SentinelPassword != "pw" || c.Password != "pw" {
				t.Errorf("got %+v", c)
			}
		}},
		{name: "cluster", url: "redis://:pw@ignored:1/0", cluster: "n1:7000, n2:7001,n3:7002", check: func(t *testing.T, o asynq.RedisConnOpt) {
			c := o.(asynq.RedisClusterClientOpt)
			if len(c.Addrs) != 3 || c.Addrs[1] != "n2:7001" || c.Password != "pw" {
				t.Errorf("got %+v", c)
			}
		}},
		{name: "acl user", url: "redis://worker:s3cret@redis:6379/0", check: func(t *testing.T, o asynq.RedisConnOpt) {
			c := o.(asynq.RedisClientOpt)
			if c.Username != "worker" || c.Password != "s3cret" {
				t.Errorf("got %+v", c)
			}
		}},
		{name: "cluster acl user", url: "rediss://worker:pw@ignored:1/0", cluster: "n1:7000", check: func(t *testing.T, o asynq.RedisConnOpt) {
			c := o.(asynq.RedisClusterClientOpt)
			if c.Username != "worker" || c.Password != "pw" || c.TLSConfig == nil {
				t.Errorf("got %+v", c)
			}
		}},
		{name: "cluster without nodes", cluster: " , ,", wantErr: "REDIS_CLUSTER_ADDRS"},
		{name: "cluster node without port", cluster: "n1:7000,n2", wantErr: `REDIS_CLUSTER_ADDRS: "n2"`},
		{name: "cluster with a bad url hides password", url: "redis://:hunter2@x:1/%zz", cluster: "n1:7000", wantErr: "REDIS_URL"},
		{name: "bad scheme", url: "http://x", wantErr: `scheme "http" not supported`},
		{name: "bad db hides password", url: "redis://:hunter2@x:1/abc", wantErr: "database number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := Parse(tt.url, tt.cluster)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Fatalf("error leaks the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, o)
		})
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	if got := Redact("redis://:hunter2@h:1/0"); strings.Contains(got, "hunter2") || !strings.Contains(got, "xxxxx") {
		t.Fatalf("Redact = %q", got)
	}
}
