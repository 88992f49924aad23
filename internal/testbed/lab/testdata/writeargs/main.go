// Command writeargs writes its arguments after the first as a JSON array
// to the file named by the first; the lab tests run it in the guest to
// prove argv and static binaries arrive intact.
package main

import (
	"encoding/json"
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: writeargs FILE [ARG...]")
		os.Exit(2)
	}
	b, err := json.Marshal(os.Args[2:])
	if err == nil {
		err = os.WriteFile(os.Args[1], append(b, '\n'), 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
