package report

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	yaml "go.yaml.in/yaml/v3"

	"zerodrop.dev/zerodrop/internal/check"
)

// WriteCompact renders one line per finding, then the fixes (one merged
// YAML patch per object, prose fixes shared by several objects printed
// once), then a table of counts by rule and severity.
func WriteCompact(w io.Writer, in Input) error {
	bw := bufio.NewWriter(w)
	r := in.Report
	fs := Ordered(r.Findings)
	for _, f := range fs {
		loc := f.Source.String()
		fmt.Fprintf(bw, "%s  %-7s  %s  %s  %s", loc, f.Severity, f.RuleID, objectName(f), folded(f.Message))
		if f.Confidence != check.ConfidenceHigh {
			fmt.Fprintf(bw, " (confidence %s)", f.Confidence)
		}
		bw.WriteString("\n")
	}
	writeFixes(bw, fs)
	writeSummaryTable(bw, fs)
	writeProblems(bw, "input errors", r.Errors)
	writeProblems(bw, "input warnings", in.Warnings)
	c := CountFindings(fs)
	fmt.Fprintf(bw, "%s checked: %s, %s, %s", plural(r.Objects, "object", "objects"),
		plural(c.Error, "error", "errors"), plural(c.Warning, "warning", "warnings"), fmt.Sprintf("%d info", c.Info))
	if len(r.Errors) > 0 {
		fmt.Fprintf(bw, "; %s", plural(len(r.Errors), "input error", "input errors"))
	}
	if Failed(fs, in.FailOn) {
		fmt.Fprintf(bw, " (failing: findings at or above %s)", in.FailOn)
	}
	bw.WriteString("\n")
	return bw.Flush()
}

func objectName(f check.Finding) string {
	if f.Object.Kind == "" && f.Object.Name == "" {
		return f.Source.File
	}
	return f.Object.String()
}

func writeProblems(bw *bufio.Writer, title string, ps []check.InputError) {
	if len(ps) == 0 {
		return
	}
	fmt.Fprintf(bw, "\n%s:\n", title)
	for _, p := range ps {
		fmt.Fprintf(bw, "%s\n", folded(p.Error()))
	}
}

// writeFixes prints each object's merged patch, then the prose fixes,
// each distinct (rule, text) once with every object it applies to.
func writeFixes(bw *bufio.Writer, fs []check.Finding) {
	type objKey struct {
		file string
		obj  check.ObjectRef
	}
	var order []objKey
	patches := map[objKey]*patch{}
	type proseKey struct{ rule, text string }
	var proseOrder []proseKey
	proseObjs := map[proseKey][]string{}
	for _, f := range fs {
		if f.Fix == "" {
			continue
		}
		k := objKey{f.Source.File, f.Object}
		p := patches[k]
		if p == nil {
			p = newPatch()
			patches[k] = p
			order = append(order, k)
		}
		if prose := p.add(f.RuleID, f.Fix, f.Field, f.Container); prose != "" {
			pk := proseKey{f.RuleID, prose}
			if _, ok := proseObjs[pk]; !ok {
				proseOrder = append(proseOrder, pk)
			}
			if name := objectName(f); !slices.Contains(proseObjs[pk], name) {
				proseObjs[pk] = append(proseObjs[pk], name)
			}
		}
	}
	if len(order) == 0 {
		return
	}
	bw.WriteString("\nfixes:\n")
	for _, k := range order {
		p := patches[k]
		if p.empty() {
			continue
		}
		name := k.obj.String()
		fmt.Fprintf(bw, "%s  %s (%s)\n", name, k.file, strings.Join(p.rules, ", "))
		docs := p.objects
		if len(p.root) > 0 {
			docs = append([]string{p.yaml()}, docs...)
		}
		for i, doc := range docs {
			if i > 0 {
				bw.WriteString("  ---\n")
			}
			writeIndented(bw, "  ", strings.TrimRight(doc, "\n"))
		}
	}
	for _, pk := range proseOrder {
		fmt.Fprintf(bw, "%s  %s: %s\n", pk.rule, strings.Join(proseObjs[pk], ", "), pk.text)
	}
}

// writeSummaryTable prints counts by rule and severity.
func writeSummaryTable(bw *bufio.Writer, fs []check.Finding) {
	if len(fs) == 0 {
		return
	}
	type row struct{ e, w, i int }
	rows := map[string]*row{}
	for _, f := range fs {
		r := rows[f.RuleID]
		if r == nil {
			r = &row{}
			rows[f.RuleID] = r
		}
		switch f.Severity {
		case check.SeverityError:
			r.e++
		case check.SeverityWarning:
			r.w++
		default:
			r.i++
		}
	}
	ids := make([]string, 0, len(rows))
	for id := range rows {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	bw.WriteString("\nsummary:\n")
	fmt.Fprintf(bw, "%-6s %6s %8s %5s\n", "rule", "error", "warning", "info")
	var t row
	for _, id := range ids {
		r := rows[id]
		fmt.Fprintf(bw, "%-6s %6d %8d %5d\n", id, r.e, r.w, r.i)
		t.e, t.w, t.i = t.e+r.e, t.w+r.w, t.i+r.i
	}
	fmt.Fprintf(bw, "%-6s %6d %8d %5d\n\n", "total", t.e, t.w, t.i)
}

// folded folds whitespace, newlines included, to single spaces.
func folded(s string) string { return strings.Join(strings.Fields(s), " ") }

var (
	// inlineSetting is a setting a prose fix names in backticks.
	inlineSetting = regexp.MustCompile("`(terminationGracePeriodSeconds|minReadySeconds): (\\d+)`")
	containerPath = regexp.MustCompile(`containers\[(\d+)\]`)
	shellBlock    = regexp.MustCompile("(?s)```[a-z]*\\n(.*?)\\n?```")
)

// replaceYAMLBlocks replaces each "```yaml" code block of s (what the
// regular expression "(?s)```yaml\n(.*?)```" matches) with what repl returns for it, given
// the whole block and its body. Fixes are mostly such blocks: scanning for
// them costs far less than the regular expression on large inputs.
func replaceYAMLBlocks(s string, repl func(block, body string) string) string {
	const open, fence = "```yaml\n", "```"
	i := strings.Index(s, open)
	if i < 0 {
		return s
	}
	var b strings.Builder
	for i >= 0 {
		end := strings.Index(s[i+len(open):], fence)
		if end < 0 {
			break
		}
		end += i + len(open)
		b.WriteString(s[:i])
		b.WriteString(repl(s[i:end+len(fence)], s[i+len(open):end]))
		s = s[end+len(fence):]
		i = strings.Index(s, open)
	}
	b.WriteString(s)
	return b.String()
}

// fixYAML caches parsed fix bodies: many objects get the same fix. The
// parsed values are only read (merge copies them into the patch).
var fixYAML struct {
	sync.Mutex
	m map[string]map[string]any
}

// parseFixYAML parses a fix's YAML block as a mapping; ok=false when it is
// not one.
func parseFixYAML(body string) (map[string]any, bool) {
	fixYAML.Lock()
	m, ok := fixYAML.m[body]
	fixYAML.Unlock()
	if !ok {
		if err := yaml.Unmarshal([]byte(body), &m); err != nil || len(m) == 0 {
			m = nil
		}
		fixYAML.Lock()
		if fixYAML.m == nil || len(fixYAML.m) > 4096 {
			fixYAML.m = map[string]map[string]any{}
		}
		fixYAML.m[body] = m
		fixYAML.Unlock()
	}
	return m, m != nil
}

// leafYAMLs caches the YAML of scalar patch leaves ("key: value"): the
// same few settings recur in thousands of objects' patches, and each
// yaml.Marshal sets up an encoder with buffers of its own.
var leafYAMLs struct {
	sync.Mutex
	m map[leafKey]string
}

type leafKey struct {
	k string
	// v is an int, int64, bool or string: comparable, and equal only
	// when written alike (not so floats: 0 and -0 are equal keys).
	v any
}

// leafYAML returns yaml.Marshal(map[string]any{k: v}).
func leafYAML(k string, v any) string {
	switch v.(type) {
	case int, int64, bool, string:
	default:
		out, _ := yaml.Marshal(map[string]any{k: v})
		return string(out)
	}
	key := leafKey{k, v}
	leafYAMLs.Lock()
	s, ok := leafYAMLs.m[key]
	leafYAMLs.Unlock()
	if ok {
		return s
	}
	out, _ := yaml.Marshal(map[string]any{k: v})
	s = string(out)
	leafYAMLs.Lock()
	if leafYAMLs.m == nil || len(leafYAMLs.m) > 4096 {
		leafYAMLs.m = map[leafKey]string{}
	}
	leafYAMLs.m[key] = s
	leafYAMLs.Unlock()
	return s
}

// inlinePaths says where the settings prose fixes name live in the object.
var inlinePaths = map[string][]string{
	"terminationGracePeriodSeconds": {"spec", "template", "spec"},
	"minReadySeconds":               {"spec"},
}

// patch is one object's fixes merged into one YAML patch: where two rules
// set the same field, the larger number wins (every number a fix proposes
// is a lower bound: a grace period, a preStop sleep, minReadySeconds, a
// stabilization window), so the merged value is safe for all of them.
type patch struct {
	root    map[string]any
	sources map[string][]string // field path -> "RULE value" of each proposal
	objects []string            // whole objects to add (PDB, Namespace)
	rules   []string
}

// containerFix holds fields for the container at index i of a pod
// template, rendered as a list item with a placeholder name.
type containerFix struct {
	items map[int]map[string]any
	names map[int]string // "" when unknown: a marked placeholder is printed
}

func newPatch() *patch { return &patch{root: map[string]any{}, sources: map[string][]string{}} }

// conflicts reports whether two rules proposed different values for one
// field.
func (p *patch) conflicts() bool {
	for _, src := range p.sources {
		for _, s := range src[1:] {
			if s[strings.IndexByte(s, ' '):] != src[0][strings.IndexByte(src[0], ' '):] {
				return true
			}
		}
	}
	return false
}

func (p *patch) empty() bool { return len(p.root) == 0 && len(p.objects) == 0 }

// add merges rule's fix; it returns the prose left to print (the YAML
// removed, settings merged into the patch named as such), "" when none.
func (p *patch) add(rule, fix, field, container string) string {
	merged := false
	prose := replaceYAMLBlocks(fix, func(block, body string) string {
		m, ok := parseFixYAML(body)
		if !ok {
			return block // not a mapping: keep it as prose
		}
		if _, ok := m["kind"]; ok {
			if !slices.Contains(p.objects, body) {
				p.objects = append(p.objects, body)
			}
			merged = true
			return ""
		}
		var at []string
		if _, ok := m["spec"]; !ok {
			if _, ok := m["metadata"]; !ok {
				if _, ok := m["webhooks"]; !ok {
					sm := containerPath.FindStringSubmatch(field)
					if sm == nil {
						return block // no place to put it
					}
					i, _ := strconv.Atoi(sm[1])
					m = map[string]any{"spec": map[string]any{"template": map[string]any{"spec": map[string]any{
						"containers": &containerFix{items: map[int]map[string]any{i: m}, names: map[int]string{i: container}}}}}}
				}
			}
		}
		p.merge(rule, p.root, m, at)
		merged = true
		return ""
	})
	// Settings named in prose, `terminationGracePeriodSeconds: N` and the like.
	if strings.Contains(prose, "GracePeriodSeconds: ") || strings.Contains(prose, "minReadySeconds: ") {
		prose = inlineSetting.ReplaceAllStringFunc(prose, func(s string) string {
			sm := inlineSetting.FindStringSubmatch(s)
			n, _ := strconv.Atoi(sm[2])
			path := inlinePaths[sm[1]]
			m := map[string]any{sm[1]: n}
			for i := len(path) - 1; i >= 0; i-- {
				m = map[string]any{path[i]: m}
			}
			p.merge(rule, p.root, m, nil)
			merged = true
			return "`" + sm[1] + "` (in the patch)"
		})
	}
	// Other code blocks (shell commands) fit on the line as inline code.
	if strings.Contains(prose, "```") {
		prose = shellBlock.ReplaceAllString(prose, "`$1`")
	}
	if merged && !slices.Contains(p.rules, rule) {
		p.rules = append(p.rules, rule)
	}
	return folded(prose)
}

// merge copies src into dst at the field path at. The path slices are
// scratch: nothing keeps them (sources keys are joined copies), so each
// level appends to its caller's.
func (p *patch) merge(rule string, dst, src map[string]any, at []string) {
	for k, v := range src {
		path := append(at, k)
		switch sv := v.(type) {
		case map[string]any:
			d, ok := dst[k].(map[string]any)
			if !ok {
				d = map[string]any{}
				dst[k] = d
			}
			p.merge(rule, d, sv, path)
		case *containerFix:
			d, ok := dst[k].(*containerFix)
			if !ok {
				d = &containerFix{items: map[int]map[string]any{}, names: map[int]string{}}
				dst[k] = d
			}
			for i, fields := range sv.items {
				if n := sv.names[i]; n != "" {
					d.names[i] = n
				}
				if d.items[i] == nil {
					d.items[i] = map[string]any{}
				}
				p.merge(rule, d.items[i], fields, append(path, strconv.Itoa(i)))
			}
		default:
			key := strings.Join(path, ".")
			p.sources[key] = append(p.sources[key], proposal(rule, v))
			old, ok := dst[k]
			if !ok {
				dst[k] = v
				continue
			}
			if a, aok := number(old); aok {
				if b, bok := number(v); bok && b > a {
					dst[k] = v
				}
			}
			// Not numbers: the first (most severe) finding's value stays.
		}
	}
}

// proposal is "RULE value" (fmt's %s %v) for a patch's sources.
func proposal(rule string, v any) string {
	switch n := v.(type) {
	case int:
		return rule + " " + strconv.Itoa(n)
	case string:
		return rule + " " + n
	}
	return fmt.Sprintf("%s %v", rule, v)
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}

// yaml renders the merged patch with sorted keys; a field several rules
// set says which value each proposed.
func (p *patch) yaml() string {
	var b strings.Builder
	p.render(&b, p.root, "", nil)
	return b.String()
}

func (p *patch) render(b *strings.Builder, m map[string]any, indent string, at []string) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		path := append(at, k) // scratch, as in merge
		switch v := m[k].(type) {
		case map[string]any:
			fmt.Fprintf(b, "%s%s:\n", indent, k)
			p.render(b, v, indent+"  ", path)
		case *containerFix:
			fmt.Fprintf(b, "%s%s:\n", indent, k)
			idx := make([]int, 0, len(v.items))
			for i := range v.items {
				idx = append(idx, i)
			}
			slices.SortFunc(idx, cmp.Compare)
			for _, i := range idx {
				if n := v.names[i]; n != "" {
					fmt.Fprintf(b, "%s- name: %s\n", indent, n)
				} else {
					fmt.Fprintf(b, "%s- name: <containers[%d]>  # the container's name\n", indent, i)
				}
				p.render(b, v.items[i], indent+"  ", append(path, strconv.Itoa(i)))
			}
		default:
			lines := strings.Split(strings.TrimRight(leafYAML(k, v), "\n"), "\n")
			src := p.sources[strings.Join(path, ".")]
			for j, l := range lines {
				b.WriteString(indent + l)
				if j == 0 && len(src) > 1 {
					fmt.Fprintf(b, "  # largest of %s", strings.Join(src, ", "))
				}
				b.WriteString("\n")
			}
		}
	}
}
