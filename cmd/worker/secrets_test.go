package main

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/erpresync/erpresync/internal/e2etest"
	"github.com/erpresync/erpresync/internal/netserversim"
	"github.com/erpresync/erpresync/internal/redistest"
)

// TestSecretsStayOut runs whole scenarios — the worker process, the simulator in Online
// mode, a real redis-server with appendonly yes, the enqueue command — once with the
// password login and once with the Online system user, with ticket expiries (so logins
// happen mid-run), random 503s and a poison key (so errors and dead letters are written).
// Then it searches the worker's logs (debug level), every CLI output, every Redis value
// (task payloads, results, dead letters, the ledger) and the AOF files for the tickets the
// simulator issued, the password, the application token, the system-user token and the
// private key: there must be no hit.
func TestSecretsStayOut(t *testing.T) {
	t.Parallel()
	srv := redistest.NewServer(t, redistest.Options{AppendOnly: true})
	if !srv.Real {
		t.Skip("the AOF needs a real redis-server")
	}
	enqueue := enqueueBinary(t)

	const (
		password    = "pw-Secret-7f3a9c!"
		appToken    = "app-Token-b81d2e"
		systemToken = "sys-Token-55c0e1"
	)
	key, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	keyFile := filepath.Join(t.TempDir(), "superoffice.pem")
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}

	var secrets []secret
	add := func(name, v string) { secrets = append(secrets, secret{name, v}) }
	add("password", password)
	add("application token", appToken)
	add("system-user token", systemToken)
	add("private exponent", string(key.D.Bytes()))
	for i, line := range strings.Split(strings.TrimSpace(string(keyPEM)), "\n") {
		if !strings.HasPrefix(line, "-----") {
			add(fmt.Sprintf("private key line %d", i), line)
		}
	}

	var evidence []artifact
	for _, mode := range []string{"password", "system-user"} {
		sim, err := netserversim.Start(netserversim.Config{
			Online: true, AppToken: appToken,
			Users:               map[string]string{testUser: password},
			SystemUserPublicKey: &key.PublicKey, SystemUserToken: systemToken,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(sim.Close)
		evidence = append(evidence, secretsScenario(t, srv, sim, enqueue, mode, func(env map[string]string) {
			env["SUPEROFFICE_APP_TOKEN"] = appToken
			if mode == "password" {
				env["SUPEROFFICE_PASSWORD"] = password
				return
			}
			delete(env, "SUPEROFFICE_USERNAME")
			delete(env, "SUPEROFFICE_PASSWORD")
			env["SUPEROFFICE_SYSTEM_TOKEN"] = systemToken
			env["SUPEROFFICE_PRIVATE_KEY_FILE"] = keyFile
			env["SUPEROFFICE_CONTEXT_ID"] = netserversim.DefaultTenant
			env["SUPEROFFICE_LOGIN_URL"] = sim.RootURL + "/Login/api/PartnerSystemUser/Authenticate"
		})...)
		tickets := sim.IssuedTickets()
		logins := sim.Counts().Logins
		if n := logins.PasswordOK + logins.SystemUserOK; n < 2 {
			t.Errorf("%s: %d logins, want a login and at least one after the tickets expired", mode, n)
		}
		for i, tk := range tickets {
			add(fmt.Sprintf("%s ticket %d", mode, i+1), tk)
		}
	}
	evidence = append(evidence, aofFiles(t, srv.Dir)...)

	var total int
	for _, a := range evidence {
		total += len(a.data)
		for _, s := range secrets {
			for _, form := range s.forms() {
				if i := bytes.Index(a.data, []byte(form)); i >= 0 {
					t.Errorf("%s found in %s: …%s…", s.name, a.name, a.data[max(0, i-60):min(len(a.data), i+len(form)+20)])
					break
				}
			}
		}
	}
	// The search must have had something to search: the poison key reached the AOF and the
	// dead-letter listing, and every mode logged in.
	joined := bytes.Join(func() [][]byte {
		var all [][]byte
		for _, a := range evidence {
			all = append(all, a.data)
		}
		return all
	}(), nil)
	if !bytes.Contains(joined, []byte(secretsPoison)) {
		t.Errorf("the poison key %s appears nowhere in %d bytes of evidence: the search looked at the wrong things", secretsPoison, total)
	}
	t.Logf("searched %d artifacts, %d bytes, for %d secrets", len(evidence), total, len(secrets))
}

const secretsPoison = "SEC000042"

// secretsScenario runs one worker process through a run submitted with the enqueue command
// and returns what it left behind: logs, CLI outputs, the Redis database's values.
func secretsScenario(t *testing.T, srv *redistest.Server, sim *netserversim.Running, enqueue, mode string, credentials func(map[string]string)) []artifact {
	t.Helper()
	db := srv.NewDB(t)
	run := "secrets-" + mode
	sim.SetPoison(secretsPoison)
	sim.SetRandomFaults(0.05, 7, netserversim.FaultUnavailable)
	// Hold calls after the 10th until the tickets are expired, so that logins happen mid-run.
	open := holdCalls(t, sim, 10, 5*time.Millisecond)

	env := workerEnv(db, sim)
	env["LOG_LEVEL"] = "debug"
	env["WORKER_BUSINESS_RETRY_DELAY"] = "1s"
	credentials(env)
	w := startWorker(t, env)

	keys := testKeys("SEC", 600)
	file := filepath.Join(t.TempDir(), "keys.txt")
	if err := os.WriteFile(file, []byte(strings.Join(keys, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out []artifact
	cli := func(args ...string) {
		cmd := exec.Command(enqueue, args...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir(), "REDIS_URL=" + db.URL()}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if _, ok := err.(*exec.ExitError); err != nil && !ok {
			t.Fatalf("enqueue %v: %v", args, err)
		}
		name := mode + ": enqueue " + strings.Join(args, " ")
		out = append(out, artifact{name + " (stdout)", stdout.Bytes()}, artifact{name + " (stderr)", stderr.Bytes()})
	}
	cli("--erp-connection", "3", "--actor-type", "Customer", "--file", file, "--run", run, "--batch-size", "20")

	waitFor(t, time.Minute, func() (bool, string) {
		return seenKeys(sim) > 10*20, "calls to be held"
	})
	sim.ExpireTickets()
	open()

	rdb := db.TestClient(t)
	st := waitDone(t, rdb, run, 2*time.Minute)
	if st.DeadKeys != 1 || st.ResyncedKeys != int64(len(keys)-1) {
		t.Errorf("%s: run %+v, want every key but the poison key resynced", mode, st)
	}
	cli("status", run, "--json")
	cli("status", run)
	cli("runs")
	cli("dead", "list", "--run", run, "--json")
	cli("dead", "export", "--format", "jsonl", "--run", run)
	cli("changes", run, "--format", "jsonl")

	out = append(out, artifact{mode + ": worker log", []byte(w.log())})
	out = append(out, redisValues(t, rdb, mode)...)
	return out
}

// artifact is something searched for secrets.
type artifact struct {
	name string
	data []byte
}

// secret is a value that must not be found, under a name that may be printed.
type secret struct{ name, value string }

// forms are the ways a secret could be written (e2etest.SecretForms).
func (s secret) forms() []string { return e2etest.SecretForms(s.value) }

// redisValues reads every key of the database with its value.
func redisValues(t *testing.T, rdb *redis.Client, mode string) []artifact {
	t.Helper()
	var out []artifact
	for k, v := range e2etest.RedisValues(t, rdb) {
		typ, _, _ := strings.Cut(v, " ")
		out = append(out, artifact{fmt.Sprintf("%s: redis %s %s", mode, typ, k), []byte(k + " " + v)})
	}
	return out
}

// aofFiles reads the server's append-only files.
func aofFiles(t *testing.T, dir string) []artifact {
	t.Helper()
	var out []artifact
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.Contains(d.Name(), ".aof") {
			return err
		}
		b, err := os.ReadFile(path)
		out = append(out, artifact{"AOF " + d.Name(), b})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("no AOF file under %s", dir)
	}
	return out
}

// TestSecretFormsFindEncodedLeaks: the search finds a secret inside a JWT-like text, in
// JSON and in a URL, at any alignment.
func TestSecretFormsFindEncodedLeaks(t *testing.T) {
	t.Parallel()
	s := secret{"ticket", "7T:c2VjcmV0LXRpY2tldC1ieXRlcy0wMTIzNDU2Nzg5"}
	for _, prefix := range []string{`{"t":"`, `{"tk":"`, `{"tkt":"`} {
		payload := base64.RawURLEncoding.EncodeToString([]byte(prefix + s.value + `","exp":1}`))
		leaks := []string{"eyJhbGciOiJSUzI1NiJ9." + payload + ".sig", `{"msg":"` + s.value + `"}`, "https://x/?t=" + url.QueryEscape(s.value)}
		for _, leak := range leaks {
			found := false
			for _, form := range s.forms() {
				found = found || strings.Contains(leak, form)
			}
			if !found {
				t.Errorf("no form of the secret found in %q", leak)
			}
		}
	}
}
