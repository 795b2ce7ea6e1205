package tenant

import (
	"os"
	"testing"

	"github.com/erpresync/erpresync/internal/redistest"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }
