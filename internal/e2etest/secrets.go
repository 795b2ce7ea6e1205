package e2etest

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
)

// SecretForms are the ways a secret could be written: as is, JSON-escaped, URL-escaped,
// hex, and base64 (standard and URL alphabets) at each of the three alignments it could
// have inside a longer encoded text such as a JWT, less the characters its neighbours share.
func SecretForms(secret string) []string {
	j, _ := json.Marshal(secret)
	forms := []string{secret, string(j[1 : len(j)-1]), url.QueryEscape(secret), hex.EncodeToString([]byte(secret))}
	for pad := range 3 {
		for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
			b := enc.EncodeToString(append(make([]byte, pad), secret...))
			if from, to := (pad*8+5)/6, len(b)-2; to-from >= 12 {
				forms = append(forms, b[from:to])
			}
		}
	}
	return forms
}

// Leaks names the secrets (name → value) found in text in any of their SecretForms, sorted;
// none when text is clean.
func Leaks(text string, secrets map[string]string) []string {
	var out []string
	for name, v := range secrets {
		if v == "" {
			continue
		}
		for _, form := range SecretForms(v) {
			if strings.Contains(text, form) {
				out = append(out, name)
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

// RedisValues reads every key of the database, on every master of a Redis Cluster, with
// its value: key → "TYPE value". It fails the test if the database is empty.
func RedisValues(t testing.TB, rdb redis.UniversalClient) map[string]string {
	t.Helper()
	ctx := context.Background()
	var mu sync.Mutex
	out := map[string]string{}
	scan := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, "*", 1000).Iterator()
		for iter.Next(ctx) {
			k := iter.Val()
			typ, v, err := redisValue(ctx, c, k)
			if err != nil {
				return err
			}
			if typ == "none" { // expired since SCAN
				continue
			}
			mu.Lock()
			out[k] = fmt.Sprintf("%s %v", typ, v)
			mu.Unlock()
		}
		return iter.Err()
	}
	var err error
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, scan)
	case *redis.Client:
		err = scan(ctx, c)
	default:
		t.Fatalf("RedisValues: a %T is neither a client nor a cluster client", rdb)
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatal("RedisValues: the database is empty")
	}
	return out
}

// redisValue reads key k of any type.
func redisValue(ctx context.Context, c *redis.Client, k string) (string, any, error) {
	typ, err := c.Type(ctx, k).Result()
	if err != nil {
		return "", nil, err
	}
	var v any
	switch typ {
	case "string":
		v, err = c.Get(ctx, k).Result()
	case "hash":
		v, err = c.HGetAll(ctx, k).Result()
	case "list":
		v, err = c.LRange(ctx, k, 0, -1).Result()
	case "set":
		v, err = c.SMembers(ctx, k).Result()
	case "zset":
		v, err = c.ZRangeWithScores(ctx, k, 0, -1).Result()
	case "stream":
		v, err = c.XRange(ctx, k, "-", "+").Result()
	case "none":
	default:
		return "", nil, fmt.Errorf("key %s of type %s", k, typ)
	}
	if err == redis.Nil {
		err = nil
	}
	return typ, v, err
}
