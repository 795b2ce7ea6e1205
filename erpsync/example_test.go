package erpsync_test

import (
	"fmt"

	"github.com/erpresync/erpresync/erpsync"
)

func ExampleValidateKey() {
	for _, key := range []string{"10001", "", "bad\x00key"} {
		fmt.Println(erpsync.ValidateKey(key))
	}
	// Output:
	// <nil>
	// external key "": empty
	// external key "bad\x00key": contains control character U+0000 at byte 3, which XML 1.0 cannot carry
}
