package targets_test

import (
	"fmt"

	"github.com/certctl/certctl/scan/targets"
)

func ExampleExpand() {
	eps, err := targets.Expand([]string{"web.internal", "db.internal:5432", "10.1.2.0/30"}, []int{443, 8443}, "")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, e := range eps {
		fmt.Println(e.Target, e.FromRange)
	}
	// Output:
	// web.internal:443 false
	// web.internal:8443 false
	// db.internal:5432 false
	// 10.1.2.1:443 true
	// 10.1.2.1:8443 true
	// 10.1.2.2:443 true
	// 10.1.2.2:8443 true
}
