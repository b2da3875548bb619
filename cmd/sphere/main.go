// Command sphere is Sphere's one binary: the CLI verbs and the long-running
// node. See README.md for a tour and `sphere help` for the verbs.
package main

import (
	"os"
)

func main() {
	if isRemoteHelper(os.Args[0]) {
		os.Exit(runRemoteHelper(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
