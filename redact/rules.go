package redact

import (
	"fmt"
	"path"
	"strings"
	"sync"
)

// Policy is a compiled policy, safe for concurrent use. Lookups cost a few
// map reads per value: rules are indexed by where they apply, and glob
// matches are cached per field name.
type Policy struct {
	// ID names the policy in records: NAME@digest of its rules.
	ID string

	global *ruleSet
	perAPI map[string]*ruleSet
	rules  []Rule
}

// Rules returns the policy's rules in order, built-in layers first.
func (p *Policy) Rules() []Rule { return append([]Rule(nil), p.rules...) }

// compiled is a rule ready to apply.
type compiled struct {
	action      Action
	keepFirst   int
	keepLast    int
	domain      string // hash domain; "" means the field's name
	stripScheme bool
	source      string // the rule's selector, for policy explanations
}

type ruleSet struct {
	paths   map[string]*compiled // body paths with [*]
	names   map[string]*compiled // **.NAME
	globs   []globRule           // **.GLOB, later rules first
	headers map[string]*compiled // lower-case names
	query   map[string]*compiled
	form    map[string]*compiled

	mu        sync.RWMutex
	nameCache map[string]*compiled // name → names or globs match (nil: none)
}

type globRule struct {
	pattern string
	rule    *compiled
}

// nameCacheMax bounds the glob cache, so a body with endless distinct field
// names costs time, not memory.
const nameCacheMax = 4096

func newRuleSet() *ruleSet {
	return &ruleSet{
		paths: map[string]*compiled{}, names: map[string]*compiled{},
		headers: map[string]*compiled{}, query: map[string]*compiled{}, form: map[string]*compiled{},
		nameCache: map[string]*compiled{},
	}
}

func compile(rules []Rule) (*Policy, error) {
	p := &Policy{global: newRuleSet(), perAPI: map[string]*ruleSet{}, rules: rules}
	for i := range rules {
		r := &rules[i]
		if err := r.validate(i); err != nil {
			return nil, err
		}
		c := &compiled{action: r.Action, keepLast: 4, domain: r.Domain, stripScheme: r.StripScheme, source: r.selector()}
		if r.KeepFirst != nil {
			c.keepFirst = *r.KeepFirst
		}
		if r.KeepLast != nil {
			c.keepLast = *r.KeepLast
		}
		rs := p.global
		if r.API != "" {
			if rs = p.perAPI[r.API]; rs == nil {
				rs = newRuleSet()
				p.perAPI[r.API] = rs
			}
		}
		// Later rules override earlier ones of the same selector: that is how
		// a file that extends a profile replaces one of its rules.
		switch {
		case r.Header != "":
			rs.headers[strings.ToLower(r.Header)] = c
		case r.Query != "":
			rs.query[r.Query] = c
		case r.Form != "":
			rs.form[r.Form] = c
		case strings.HasPrefix(r.Path, "**."):
			name := r.Path[3:]
			if strings.ContainsAny(name, "*?[") {
				rs.globs = append([]globRule{{name, c}}, rs.globs...)
			} else {
				rs.names[name] = c
			}
		default:
			rs.paths[r.Path] = c
		}
	}
	return p, nil
}

// byName returns the **.NAME rule for a field name: an exact name wins over a
// glob, a later glob over an earlier one.
func (rs *ruleSet) byName(name []byte) *compiled {
	if len(name) == 0 {
		return nil
	}
	if c := rs.names[string(name)]; c != nil {
		return c
	}
	if len(rs.globs) == 0 {
		return nil
	}
	rs.mu.RLock()
	c, ok := rs.nameCache[string(name)]
	rs.mu.RUnlock()
	if ok {
		return c
	}
	s := string(name)
	for _, g := range rs.globs {
		if ok, _ := path.Match(g.pattern, s); ok {
			c = g.rule
			break
		}
	}
	rs.mu.Lock()
	if len(rs.nameCache) < nameCacheMax {
		rs.nameCache[s] = c
	}
	rs.mu.Unlock()
	return c
}

// scope is the rule sets that apply to one record: its API's, then global.
type scope struct {
	api    *ruleSet // nil when no rule names the record's API
	global *ruleSet
}

func (p *Policy) scope(api string) scope {
	return scope{api: p.perAPI[api], global: p.global}
}

// body returns the rule for a JSON body member at wpath (body-relative, [*]
// for indexes) named name (nil for array elements). Per-API beats global;
// a full path beats a field name.
func (s scope) body(wpath []byte, name []byte) *compiled {
	for _, rs := range [2]*ruleSet{s.api, s.global} {
		if rs == nil {
			continue
		}
		if len(rs.paths) > 0 {
			if c := rs.paths[string(wpath)]; c != nil {
				return c
			}
		}
		if c := rs.byName(name); c != nil {
			return c
		}
	}
	return nil
}

// place kinds for param lookups.
type place int

const (
	placeQuery place = iota
	placeForm
	placeHeader
	placePathParam
)

func (rs *ruleSet) placeMap(pl place) map[string]*compiled {
	switch pl {
	case placeQuery:
		return rs.query
	case placeForm:
		return rs.form
	case placeHeader:
		return rs.headers
	}
	return nil
}

// param returns the rule for a query parameter, form field, header (name in
// lower case) or path parameter: a rule for that place beats a **.NAME rule;
// headers take no **.NAME rules, since header names are not field names.
func (s scope) param(pl place, name string) *compiled {
	for _, rs := range [2]*ruleSet{s.api, s.global} {
		if rs == nil {
			continue
		}
		if m := rs.placeMap(pl); m != nil {
			if c := m[name]; c != nil {
				return c
			}
		}
		if pl != placeHeader {
			if c := rs.byName([]byte(name)); c != nil {
				return c
			}
		}
	}
	return nil
}

// Explain says which rule protects a value, for `mdtap policy` tooling.
func (p *Policy) Explain(api, bodyPath, field string) string {
	if c := p.scope(api).body([]byte(bodyPath), []byte(field)); c != nil {
		return fmt.Sprintf("%s (%s)", c.action, c.source)
	}
	return "encrypt (default)"
}
