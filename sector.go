package mdtap

// Sector is the MyData industry an exchange belongs to. The industry sectors
// are the standard's URL segment (/v1/{industry}/…); auth, ca and mgmts name
// the non-industry APIs; unknown is everything else.
type Sector string

const (
	SectorBank    Sector = "bank"
	SectorCard    Sector = "card"
	SectorInvest  Sector = "invest"
	SectorInsu    Sector = "insu"
	SectorGinsu   Sector = "ginsu"
	SectorEfin    Sector = "efin"
	SectorTelecom Sector = "telecom"
	SectorCapital Sector = "capital"
	SectorP2P     Sector = "p2p"
	SectorUsury   Sector = "usury"
	SectorBond    Sector = "bond"
	SectorGov     Sector = "gov"
	SectorAuth    Sector = "auth"  // /oauth/2.0/*
	SectorCA      Sector = "ca"    // /ca/*: the integrated-auth certification authorities
	SectorMgmts   Sector = "mgmts" // /mgmts/*: the comprehensive portal's support APIs
	SectorUnknown Sector = "unknown"
)

// Sectors lists the whole vocabulary in a fixed order.
var Sectors = []Sector{
	SectorBank, SectorCard, SectorInvest, SectorInsu, SectorGinsu, SectorEfin,
	SectorTelecom, SectorCapital, SectorP2P, SectorUsury, SectorBond, SectorGov,
	SectorAuth, SectorCA, SectorMgmts, SectorUnknown,
}

// Valid reports whether s is in the vocabulary.
func (s Sector) Valid() bool {
	for _, v := range Sectors {
		if s == v {
			return true
		}
	}
	return false
}

// Industry reports whether s is an industry sector, one that appears as the
// industry segment of a resource path.
func (s Sector) Industry() bool {
	switch s {
	case SectorAuth, SectorCA, SectorMgmts, SectorUnknown, "":
		return false
	}
	return s.Valid()
}
