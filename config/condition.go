package config

import (
	"fmt"
	"net/netip"
	"strings"
)

// Condition is a parsed tcp_request condition: it holds when any group of
// Or holds, and a group holds when all its terms do. Negate inverts the
// result (an unless condition).
type Condition struct {
	// Negate inverts the whole condition (TCPRule.Unless).
	Negate bool
	// Or are the alternatives; an empty Or is always true (a rule
	// without a condition), before Negate.
	Or [][]CondTerm
}

// CondTerm is one term of a condition: an ACL name, possibly negated.
type CondTerm struct {
	// ACL is the name of one of the frontend's ACLs.
	ACL string
	// Not makes the term hold when the ACL does not match.
	Not bool
}

// ParseCondition reads a condition written in HAProxy's syntax over ACL
// names: terms separated by blanks are ANDed, "||" or "or" separates
// alternatives, "!NAME" negates a term. It checks the syntax only; the
// validation of a Config also checks that each name is one of the
// frontend's ACLs.
func ParseCondition(expr string) (Condition, error) {
	var c Condition
	var group []CondTerm
	words := strings.Fields(expr)
	if len(words) == 0 {
		return c, fmt.Errorf("empty condition")
	}
	for i, w := range words {
		if w == "||" || w == "or" {
			if len(group) == 0 {
				return Condition{}, fmt.Errorf("%q has nothing before it (word %d)", w, i+1)
			}
			c.Or = append(c.Or, group)
			group = nil
			continue
		}
		t := CondTerm{ACL: w}
		if strings.HasPrefix(w, "!") {
			t = CondTerm{ACL: w[1:], Not: true}
		}
		if !ValidACLName(t.ACL) {
			return Condition{}, fmt.Errorf("%q is not an ACL name (letters, digits and _ . : - only)", t.ACL)
		}
		group = append(group, t)
	}
	if len(group) == 0 {
		return Condition{}, fmt.Errorf("condition ends with %q", words[len(words)-1])
	}
	c.Or = append(c.Or, group)
	return c, nil
}

// Condition returns the rule's condition: If, or Unless negated, or an
// always-true condition when neither is set.
func (r TCPRule) Condition() (Condition, error) {
	switch {
	case r.If != "" && r.Unless != "":
		return Condition{}, fmt.Errorf("set if or unless, not both")
	case r.If != "":
		return ParseCondition(r.If)
	case r.Unless != "":
		c, err := ParseCondition(r.Unless)
		c.Negate = err == nil
		return c, err
	}
	return Condition{}, nil
}

// Match evaluates the condition, asking acl whether each named ACL
// matches.
func (c Condition) Match(acl func(name string) bool) bool {
	ok := len(c.Or) == 0
	for _, group := range c.Or {
		all := true
		for _, t := range group {
			if acl(t.ACL) == t.Not {
				all = false
				break
			}
		}
		if all {
			ok = true
			break
		}
	}
	return ok != c.Negate
}

// String writes the condition back in the syntax ParseCondition reads,
// without Negate.
func (c Condition) String() string {
	groups := make([]string, len(c.Or))
	for i, g := range c.Or {
		terms := make([]string, len(g))
		for j, t := range g {
			terms[j] = t.ACL
			if t.Not {
				terms[j] = "!" + t.ACL
			}
		}
		groups[i] = strings.Join(terms, " ")
	}
	return strings.Join(groups, " || ")
}

// ValidACLName reports whether s is a name HAProxy accepts for an ACL:
// letters, digits and _ . : - only. Conditions and frontend.acl keys must
// use such names.
func ValidACLName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

// ParseACLEntry reads one address of an ACL: an IP address (a prefix of
// its full length) or a CIDR prefix, masked. IPv4-mapped IPv6 addresses
// are unmapped, so that they match IPv4 clients.
func ParseACLEntry(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			// HAProxy also takes a dotted netmask: 10.0.0.0/255.0.0.0.
			addr, mask, _ := strings.Cut(s, "/")
			a, err1 := netip.ParseAddr(addr)
			m, err2 := netip.ParseAddr(mask)
			if err1 != nil || err2 != nil || !a.Is4() || !m.Is4() {
				return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR prefix", s)
			}
			bits, ok := maskBits(m.As4())
			if !ok {
				return netip.Prefix{}, fmt.Errorf("%q: netmask %s is not contiguous", s, mask)
			}
			return netip.PrefixFrom(a, bits).Masked(), nil
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR prefix", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func maskBits(m [4]byte) (int, bool) {
	n := uint32(m[0])<<24 | uint32(m[1])<<16 | uint32(m[2])<<8 | uint32(m[3])
	bits := 0
	for n&0x80000000 != 0 {
		bits++
		n <<= 1
	}
	return bits, n == 0
}
