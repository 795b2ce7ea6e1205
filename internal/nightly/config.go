package nightly

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/robfig/cron/v3"

	"github.com/erpresync/erpresync/erpsync"
	"github.com/erpresync/erpresync/intake"
	"github.com/erpresync/erpresync/tasks"
)

// EnvConfig names the environment variable the worker reads the nightly configuration from
// (flag --nightly-config): a path to a JSON file, or the JSON itself. Unset or empty means
// no nightly entries.
const EnvConfig = "NIGHTLY_CONFIG"

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("invalid nightly configuration")

// Entry is one nightly bulk resync: at each Cron time, the keys in Source are submitted as
// the run "nightly-NAME-YYYY-MM-DD".
//
// In JSON:
//
//	{"name": "customers", "cron": "30 2 * * *", "erp_connection": 3,
//	 "actor_type": "Customer", "source": "/exports/customers-*.csv", "csv_column": "erp_key"}
type Entry struct {
	// Tenant is the tenant whose keys the entry submits (tasks.ValidateTenantID; a tenant of
	// the tenants file). Zero value: the implicit tenant of the SUPEROFFICE_* settings.
	Tenant string `json:"tenant,omitempty"`
	// Name identifies the entry in run names, logs and metrics: 1 to 40 letters, digits, '-'
	// or '_', unique among the entries of its tenant.
	Name string `json:"name"`
	// Cron is when to run, as asynq.Scheduler reads it: five fields ("30 2 * * *"), or a
	// descriptor ("@daily", "@every 6h"). Times are in the scheduler's location (UTC unless
	// the worker sets SchedulerOpts.Location). Fire at most once a day: every firing of a day
	// names the same run, so a second one resubmits it, and is refused if the export
	// changed in between (intake.ErrRunMismatch).
	Cron string `json:"cron"`
	// ErpConnection is the ERP connection id; must be positive.
	ErpConnection int `json:"erp_connection"`
	// ActorType is the kind of ERP record: a name ("Customer") or its number as a string
	// ("1"); not Unknown.
	ActorType erpsync.ActorType `json:"actor_type"`
	// Source is the file the ERP export writes, or a glob ("/exports/customers-*.csv"); of
	// several matches the most recently modified is used. A missing or empty source is an
	// error, never "resync everything".
	Source string `json:"source"`
	// CSVColumn, CSVHeader and CSVDelimiter read the source as CSV; see intake.Source.
	// Zero values: one key per line.
	CSVColumn    string `json:"csv_column,omitempty"`
	CSVHeader    bool   `json:"csv_header,omitempty"`
	CSVDelimiter string `json:"csv_delimiter,omitempty"`
	// BatchSize is the keys per call. Zero value: tasks.DefaultBatchSize.
	BatchSize int `json:"batch_size,omitempty"`
	// Strict refuses the whole file if one key is invalid. Zero value: skip invalid keys.
	Strict bool `json:"strict,omitempty"`
}

// Config is the nightly configuration: {"entries": [Entry, ...]}.
type Config struct {
	Entries []Entry `json:"entries"`
}

// LoadConfig reads a configuration from v: JSON when it starts with '{' or '[' (a bare
// list of entries), otherwise the path of a JSON file. An empty v gives an empty Config.
func LoadConfig(v string) (Config, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return Config{}, nil
	}
	data := []byte(v)
	name := EnvConfig
	if v[0] != '{' && v[0] != '[' {
		var err error
		if data, err = os.ReadFile(v); err != nil {
			return Config{}, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		name = v
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", name, err)
	}
	return cfg, nil
}

// ParseConfig decodes and validates a JSON configuration.
func ParseConfig(data []byte) (Config, error) {
	var cfg Config
	data = bytes.TrimSpace(data)
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var err error
	if len(data) > 0 && data[0] == '[' {
		err = dec.Decode(&cfg.Entries)
	} else {
		err = dec.Decode(&cfg)
	}
	if err != nil {
		return Config{}, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return cfg, cfg.Validate()
}

var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Validate reports the first problem, naming the entry and the field.
func (c Config) Validate() error {
	seen := map[string]bool{}
	for i, e := range c.Entries {
		if err := e.Validate(); err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
		if seen[e.key()] {
			if e.Tenant != "" {
				return fmt.Errorf("%w: entry %d: name %q is used twice for tenant %s", ErrConfig, i, e.Name, e.Tenant)
			}
			return fmt.Errorf("%w: entry %d: name %q is used twice", ErrConfig, i, e.Name)
		}
		seen[e.key()] = true
	}
	return nil
}

// Validate reports the first problem with e, naming the field.
func (e Entry) Validate() error {
	if e.Name == "" || len(e.Name) > 40 || strings.Trim(e.Name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") != "" {
		return fmt.Errorf("%w: name %q: want 1 to 40 letters, digits, '-' or '_'", ErrConfig, e.Name)
	}
	if e.Tenant != "" {
		if err := tasks.ValidateTenantID(e.Tenant); err != nil {
			return fmt.Errorf("%w: %s: tenant: %w", ErrConfig, e.Name, err)
		}
	}
	if _, err := cronParser.Parse(e.Cron); err != nil {
		return fmt.Errorf("%w: %s: cron %q: %v (want five fields like \"30 2 * * *\" or a descriptor like \"@daily\")", ErrConfig, e.Name, e.Cron, err)
	}
	if e.ErpConnection <= 0 {
		return fmt.Errorf("%w: %s: erp_connection %d: must be a positive integer", ErrConfig, e.Name, e.ErpConnection)
	}
	if err := e.ActorType.Validate(); err != nil {
		return fmt.Errorf("%w: %s: actor_type: %w", ErrConfig, e.Name, err)
	}
	if strings.TrimSpace(e.Source) == "" {
		return fmt.Errorf("%w: %s: source is empty: want a file path or a glob", ErrConfig, e.Name)
	}
	if _, err := filepath.Match(e.Source, ""); err != nil {
		return fmt.Errorf("%w: %s: source %q: %v (want a file path or a glob like /exports/customers-*.csv)", ErrConfig, e.Name, e.Source, err)
	}
	if e.BatchSize < 0 || e.BatchSize > tasks.MaxBatchSize {
		return fmt.Errorf("%w: %s: batch_size %d: want 1 to %d (0 for the default %d)", ErrConfig, e.Name, e.BatchSize, tasks.MaxBatchSize, tasks.DefaultBatchSize)
	}
	if utf8.RuneCountInString(e.CSVDelimiter) > 1 {
		return fmt.Errorf("%w: %s: csv_delimiter %q: want one character", ErrConfig, e.Name, e.CSVDelimiter)
	}
	// What intake would refuse at every firing is refused here, when the worker starts.
	if err := e.source(e.Source).Validate(); err != nil {
		return fmt.Errorf("%w: %s: %s", ErrConfig, e.Name, strings.TrimPrefix(err.Error(), intake.ErrConfig.Error()+": "))
	}
	return nil
}

// key names the entry among all tenants' entries: its tenant's run key of its name.
func (e Entry) key() string { return tasks.RunKey(e.Tenant, e.Name) }

func (e Entry) source(path string) intake.Source {
	s := intake.Source{Path: path, CSVColumn: e.CSVColumn, CSVHeader: e.CSVHeader}
	if e.CSVDelimiter != "" {
		s.CSVComma, _ = utf8.DecodeRuneInString(e.CSVDelimiter)
	}
	return s
}
