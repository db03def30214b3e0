package report

import (
	"encoding/json"
	"io"
	"net/url"
	"path/filepath"
	"strings"
	"unicode"

	"zerodrop.dev/zerodrop/internal/check"
)

// SARIFSchema is the schema URI written into SARIF logs.
const SARIFSchema = "https://json.schemastore.org/sarif-2.1.0.json"

// The SARIF 2.1.0 subset zerodrop writes.
type sarifLog struct {
	Schema  string     `json:"$schema"`
	Version string     `json:"version"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool        sarifTool         `json:"tool"`
	Invocations []sarifInvocation `json:"invocations"`
	Results     []sarifResult     `json:"results"`
}

type sarifTool struct {
	Driver sarifDriver `json:"driver"`
}

type sarifDriver struct {
	Name           string      `json:"name"`
	Version        string      `json:"version,omitempty"`
	SemanticVer    string      `json:"semanticVersion,omitempty"`
	InformationURI string      `json:"informationUri,omitempty"`
	Rules          []sarifRule `json:"rules"`
}

type sarifText struct {
	Text     string `json:"text"`
	Markdown string `json:"markdown,omitempty"`
}

type sarifRule struct {
	ID                   string             `json:"id"`
	Name                 string             `json:"name,omitempty"`
	ShortDescription     sarifText          `json:"shortDescription"`
	FullDescription      sarifText          `json:"fullDescription"`
	Help                 sarifText          `json:"help"`
	DefaultConfiguration sarifConfiguration `json:"defaultConfiguration"`
}

type sarifConfiguration struct {
	Level string `json:"level"`
}

type sarifInvocation struct {
	ExecutionSuccessful bool                `json:"executionSuccessful"`
	Notifications       []sarifNotification `json:"toolExecutionNotifications,omitempty"`
}

type sarifNotification struct {
	Level     string          `json:"level"`
	Message   sarifText       `json:"message"`
	Locations []sarifLocation `json:"locations,omitempty"`
}

type sarifResult struct {
	RuleID     string          `json:"ruleId"`
	RuleIndex  *int            `json:"ruleIndex,omitempty"`
	Level      string          `json:"level"`
	Message    sarifText       `json:"message"`
	Locations  []sarifLocation `json:"locations"`
	Properties map[string]any  `json:"properties,omitempty"`
}

type sarifLocation struct {
	PhysicalLocation *sarifPhysical `json:"physicalLocation,omitempty"`
	LogicalLocations []sarifLogical `json:"logicalLocations,omitempty"`
}

type sarifPhysical struct {
	ArtifactLocation sarifArtifact `json:"artifactLocation"`
	Region           *sarifRegion  `json:"region,omitempty"`
}

type sarifArtifact struct {
	URI string `json:"uri"`
}

type sarifRegion struct {
	StartLine int `json:"startLine"`
}

type sarifLogical struct {
	Name               string `json:"name"`
	FullyQualifiedName string `json:"fullyQualifiedName,omitempty"`
	Kind               string `json:"kind,omitempty"`
}

func sarifLevel(s check.Severity) string {
	switch s {
	case check.SeverityError:
		return "error"
	case check.SeverityWarning:
		return "warning"
	}
	return "note"
}

// fileURI makes a SARIF artifact URI (a relative URI reference) from a path.
func fileURI(p string) string {
	return (&url.URL{Path: filepath.ToSlash(p)}).String()
}

func physical(s check.Source) *sarifPhysical {
	if s.File == "" {
		return nil
	}
	p := &sarifPhysical{ArtifactLocation: sarifArtifact{URI: fileURI(s.File)}}
	if s.Line > 0 {
		p.Region = &sarifRegion{StartLine: s.Line}
	}
	return p
}

// ruleName makes the PascalCase name SARIF viewers show from a rule title.
func ruleName(title string) string {
	var b strings.Builder
	up := true
	for _, r := range title {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			if up {
				r = unicode.ToUpper(r)
			}
			b.WriteRune(r)
			up = false
			continue
		}
		up = true
	}
	return b.String()
}

func ruleHelp(r check.Rule) sarifText {
	var t, md strings.Builder
	t.WriteString(r.Rationale)
	md.WriteString(r.Rationale)
	if r.Formula != "" {
		t.WriteString("\n\nFormula: " + r.Formula)
		md.WriteString("\n\n**Formula:** `" + r.Formula + "`")
	}
	if r.Fix != "" {
		t.WriteString("\n\nFix: " + r.Fix)
		md.WriteString("\n\n**Fix:**\n\n```yaml\n" + strings.TrimRight(r.Fix, "\n") + "\n```")
	}
	return sarifText{Text: t.String(), Markdown: md.String()}
}

// BuildSARIF converts in into a SARIF 2.1.0 log with one run.
func BuildSARIF(in Input) any {
	drv := sarifDriver{Name: "zerodrop", Version: in.Version, Rules: []sarifRule{}}
	index := map[string]int{}
	for i, r := range in.Rules {
		index[r.ID] = i
		full := r.Rationale
		if full == "" {
			full = r.Title
		}
		drv.Rules = append(drv.Rules, sarifRule{
			ID:                   r.ID,
			Name:                 ruleName(r.Title),
			ShortDescription:     sarifText{Text: r.Title},
			FullDescription:      sarifText{Text: full},
			Help:                 ruleHelp(r),
			DefaultConfiguration: sarifConfiguration{Level: sarifLevel(r.Severity)},
		})
	}
	run := sarifRun{Tool: sarifTool{Driver: drv}, Results: []sarifResult{}}
	inv := sarifInvocation{ExecutionSuccessful: len(in.Report.Errors) == 0}
	for _, e := range in.Report.Errors {
		n := sarifNotification{Level: "error", Message: sarifText{Text: e.Err}}
		if p := physical(e.Source); p != nil {
			n.Locations = []sarifLocation{{PhysicalLocation: p}}
		}
		inv.Notifications = append(inv.Notifications, n)
	}
	for _, e := range in.Warnings {
		n := sarifNotification{Level: "warning", Message: sarifText{Text: e.Err}}
		if p := physical(e.Source); p != nil {
			n.Locations = []sarifLocation{{PhysicalLocation: p}}
		}
		inv.Notifications = append(inv.Notifications, n)
	}
	run.Invocations = []sarifInvocation{inv}
	for _, f := range Ordered(in.Report.Findings) {
		msg := f.Message
		if f.Consequence != "" {
			msg = strings.TrimRight(msg, ". ") + ". " + f.Consequence
		}
		loc := sarifLocation{PhysicalLocation: physical(f.Source)}
		if f.Object.Name != "" {
			fq := f.Object.Kind + "/" + f.Object.Name
			if f.Object.Namespace != "" {
				fq = f.Object.Kind + "/" + f.Object.Namespace + "/" + f.Object.Name
			}
			loc.LogicalLocations = []sarifLogical{{Name: f.Object.Name, FullyQualifiedName: fq, Kind: "object"}}
		}
		res := sarifResult{
			RuleID:    f.RuleID,
			Level:     sarifLevel(f.Severity),
			Message:   sarifText{Text: msg},
			Locations: []sarifLocation{loc},
		}
		if i, ok := index[f.RuleID]; ok {
			res.RuleIndex = &i
		}
		props := map[string]any{"confidence": f.Confidence.String()}
		if f.Field != "" {
			props["field"] = f.Field
		}
		if f.Fix != "" {
			props["fix"] = f.Fix
		}
		if len(props) > 0 {
			res.Properties = props
		}
		run.Results = append(run.Results, res)
	}
	return sarifLog{Schema: SARIFSchema, Version: "2.1.0", Runs: []sarifRun{run}}
}

// WriteSARIF writes the report as a SARIF 2.1.0 log.
func WriteSARIF(w io.Writer, in Input) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(BuildSARIF(in))
}
