package tasks

import (
	"errors"
	"fmt"
	"strings"
)

// MaxTenantID is the longest tenant ID, in bytes.
const MaxTenantID = 64

// A tenant ID names one SuperOffice tenant everywhere: in payloads, ledger keys, the CLI, the
// intake API, metrics and logs. The empty ID is the implicit tenant, the one the
// SUPEROFFICE_* settings describe: batches written before tenants existed carry no tenant and
// belong to it, and its runs keep the ledger keys they always had.

// ValidateTenantID reports whether id can name a tenant: 1 to MaxTenantID bytes of letters,
// digits and "-_.", beginning with a letter or digit. It is the one check of a tenant ID; the
// tenants file, the CLI, the intake API and the handler all call it.
func ValidateTenantID(id string) error {
	if id == "" {
		return errors.New("tenant id is empty")
	}
	if len(id) > MaxTenantID {
		return fmt.Errorf("tenant id is %d bytes long: at most %d", len(id), MaxTenantID)
	}
	for i, r := range id {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || i > 0 && strings.ContainsRune("-_.", r)
		if !ok {
			return fmt.Errorf("tenant id %q: character %q at byte %d: only letters, digits and -_. (not first) are allowed", id, r, i)
		}
	}
	return nil
}

// RunKey is the name under which the ledger keeps run of tenant: the run name itself for the
// implicit tenant (so runs written before tenants existed read unchanged), "TENANT/RUN"
// otherwise. A run name has no "/", so two tenants' runs of the same name never meet.
func RunKey(tenant, run string) string {
	if tenant == "" {
		return run
	}
	return tenant + "/" + run
}

// SplitRunKey is the inverse of RunKey.
func SplitRunKey(key string) (tenant, run string) {
	if i := strings.IndexByte(key, '/'); i >= 0 {
		return key[:i], key[i+1:]
	}
	return "", key
}
