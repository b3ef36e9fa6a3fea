// Writes tests/unit/data/podinfo-annotations: a pod's annotations exactly as the kubelet writes a downward-API
// volume item of `fieldPath: metadata.annotations` (kubernetes pkg/fieldpath/fieldpath.go FormatMap, v1.20:
// keys sorted, each line `key=` + Go's %q of the value, the last newline trimmed). Go's own %q (strconv.Quote)
// is the point: the file is what a real kubelet gives the Ray processes.
//
//	go run tests/unit/data/downward_annotations.go > tests/unit/data/podinfo-annotations
package main

import (
	"fmt"
	"os"
	"sort"
	"strings"
)

func main() {
	annotations := map[string]string{
		"rayqueue.io/preemption-notice": `{"claimant":"algorithm-text/train","claimantUID":"5b1f7c1e-2f0c-4a35-9d8e-0c1d2e3f4a5b",` +
			`"deadline":"2026-12-02T01:37:44Z","grace":"2m0s","job":"intern/big",` +
			`"reason":"reclaim for algorithm-text/train, guaranteed in root/algorithm/text; root/algorithm/intern borrows above its min (priority 0) — «quoted» \\ back\tslash"}`,
		"rayqueue.io/gang-placed":                      "12.5",
		"kubectl.kubernetes.io/last-applied-configuration": "{\"apiVersion\":\"v1\",\"kind\":\"Pod\"}\n",
		"ray.io/ft-enabled":                            "false",
	}
	keys := make([]string, 0, len(annotations))
	for k := range annotations {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out string
	for _, k := range keys {
		out += fmt.Sprintf("%v=%q\n", k, annotations[k])
	}
	fmt.Fprint(os.Stdout, strings.TrimSuffix(out, "\n"))
}
