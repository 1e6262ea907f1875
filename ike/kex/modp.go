package kex

import (
	"crypto/rand"
	"fmt"
	"math/big"
	"strings"
	"sync"
)

// RFC 3526 MODP primes; the generator is 2 for all three. Each is
// 2^N - 2^(N-64) - 1 + 2^64 * ([2^(N-130) pi] + offset), which the tests
// recompute.
const (
	modp2048Hex = `
FFFFFFFF FFFFFFFF C90FDAA2 2168C234 C4C6628B 80DC1CD1 29024E08 8A67CC74
020BBEA6 3B139B22 514A0879 8E3404DD EF9519B3 CD3A431B 302B0A6D F25F1437
4FE1356D 6D51C245 E485B576 625E7EC6 F44C42E9 A637ED6B 0BFF5CB6 F406B7ED
EE386BFB 5A899FA5 AE9F2411 7C4B1FE6 49286651 ECE45B3D C2007CB8 A163BF05
98DA4836 1C55D39A 69163FA8 FD24CF5F 83655D23 DCA3AD96 1C62F356 208552BB
9ED52907 7096966D 670C354E 4ABC9804 F1746C08 CA18217C 32905E46 2E36CE3B
E39E772C 180E8603 9B2783A2 EC07A28F B5C55DF0 6F4C52C9 DE2BCBF6 95581718
3995497C EA956AE5 15D22618 98FA0510 15728E5A 8AACAA68 FFFFFFFF FFFFFFFF`
	modp3072Hex = `
FFFFFFFF FFFFFFFF C90FDAA2 2168C234 C4C6628B 80DC1CD1 29024E08 8A67CC74
020BBEA6 3B139B22 514A0879 8E3404DD EF9519B3 CD3A431B 302B0A6D F25F1437
4FE1356D 6D51C245 E485B576 625E7EC6 F44C42E9 A637ED6B 0BFF5CB6 F406B7ED
EE386BFB 5A899FA5 AE9F2411 7C4B1FE6 49286651 ECE45B3D C2007CB8 A163BF05
98DA4836 1C55D39A 69163FA8 FD24CF5F 83655D23 DCA3AD96 1C62F356 208552BB
9ED52907 7096966D 670C354E 4ABC9804 F1746C08 CA18217C 32905E46 2E36CE3B
E39E772C 180E8603 9B2783A2 EC07A28F B5C55DF0 6F4C52C9 DE2BCBF6 95581718
3995497C EA956AE5 15D22618 98FA0510 15728E5A 8AAAC42D AD33170D 04507A33
A85521AB DF1CBA64 ECFB8504 58DBEF0A 8AEA7157 5D060C7D B3970F85 A6E1E4C7
ABF5AE8C DB0933D7 1E8C94E0 4A25619D CEE3D226 1AD2EE6B F12FFA06 D98A0864
D8760273 3EC86A64 521F2B18 177B200C BBE11757 7A615D6C 770988C0 BAD946E2
08E24FA0 74E5AB31 43DB5BFC E0FD108E 4B82D120 A93AD2CA FFFFFFFF FFFFFFFF`
	modp4096Hex = `
FFFFFFFF FFFFFFFF C90FDAA2 2168C234 C4C6628B 80DC1CD1 29024E08 8A67CC74
020BBEA6 3B139B22 514A0879 8E3404DD EF9519B3 CD3A431B 302B0A6D F25F1437
4FE1356D 6D51C245 E485B576 625E7EC6 F44C42E9 A637ED6B 0BFF5CB6 F406B7ED
EE386BFB 5A899FA5 AE9F2411 7C4B1FE6 49286651 ECE45B3D C2007CB8 A163BF05
98DA4836 1C55D39A 69163FA8 FD24CF5F 83655D23 DCA3AD96 1C62F356 208552BB
9ED52907 7096966D 670C354E 4ABC9804 F1746C08 CA18217C 32905E46 2E36CE3B
E39E772C 180E8603 9B2783A2 EC07A28F B5C55DF0 6F4C52C9 DE2BCBF6 95581718
3995497C EA956AE5 15D22618 98FA0510 15728E5A 8AAAC42D AD33170D 04507A33
A85521AB DF1CBA64 ECFB8504 58DBEF0A 8AEA7157 5D060C7D B3970F85 A6E1E4C7
ABF5AE8C DB0933D7 1E8C94E0 4A25619D CEE3D226 1AD2EE6B F12FFA06 D98A0864
D8760273 3EC86A64 521F2B18 177B200C BBE11757 7A615D6C 770988C0 BAD946E2
08E24FA0 74E5AB31 43DB5BFC E0FD108E 4B82D120 A9210801 1A723C12 A787E6D7
88719A10 BDBA5B26 99C32718 6AF4E23C 1A946834 B6150BDA 2583E9CA 2AD44CE8
DBBBC2DB 04DE8EF9 2E8EFC14 1FBECAA6 287C5947 4E6BC05D 99B2964F A090C3A2
233BA186 515BE7ED 1F612970 CEE2D7AF B81BDD76 2170481C D0069127 D5B05AA9
93B4EA98 8D8FDDC1 86FFB7DC 90A6C08F 4DF435C9 34063199 FFFFFFFF FFFFFFFF`
)

// modpGroup is a finite-field Diffie-Hellman group with generator 2.
type modpGroup struct {
	p       *big.Int
	pMinus1 *big.Int
	size    int // octets of p: the length of public values and the shared secret
	expBits int // private exponent length: twice the RFC 3526 strength estimate
}

var (
	modpOnce   sync.Once
	modpGroups map[ID]*modpGroup
)

func parseHexPrime(s string) *big.Int {
	p, ok := new(big.Int).SetString(strings.Join(strings.Fields(s), ""), 16)
	if !ok {
		panic("kex: bad built-in prime")
	}
	return p
}

func modpGroupOf(id ID) *modpGroup {
	modpOnce.Do(func() {
		modpGroups = map[ID]*modpGroup{}
		for _, g := range []struct {
			id      ID
			hex     string
			expBits int
		}{{MODP2048, modp2048Hex, 320}, {MODP3072, modp3072Hex, 420}, {MODP4096, modp4096Hex, 480}} {
			p := parseHexPrime(g.hex)
			modpGroups[g.id] = &modpGroup{p: p, pMinus1: new(big.Int).Sub(p, big.NewInt(1)),
				size: (p.BitLen() + 7) / 8, expBits: g.expBits}
		}
	})
	return modpGroups[id]
}

// modpExchange is Diffie-Hellman in a MODP group. math/big is not constant
// time; the private exponent is ephemeral.
type modpExchange struct {
	m   *Method
	g   *modpGroup
	x   *big.Int
	pub []byte
}

func newMODP(m *Method, _ bool) (Exchange, error) { return newMODPWith(m, nil) }

// newMODPWith builds the exchange with a random private exponent, or with x
// (for tests).
func newMODPWith(m *Method, x *big.Int) (*modpExchange, error) {
	g := modpGroupOf(m.ID)
	if x == nil {
		var err error
		limit := new(big.Int).Lsh(big.NewInt(1), uint(g.expBits))
		if x, err = rand.Int(rand.Reader, limit); err != nil {
			return nil, err
		}
		x.SetBit(x, g.expBits-1, 1) // full length, so never 0 or 1
	}
	y := new(big.Int).Exp(big.NewInt(2), x, g.p)
	return &modpExchange{m: m, g: g, x: x, pub: y.FillBytes(make([]byte, g.size))}, nil
}

func (e *modpExchange) Method() *Method { return e.m }

func (e *modpExchange) PublicValue() []byte { return append([]byte(nil), e.pub...) }

// SharedSecret checks 1 < y < p-1 (RFC 6989 section 2.1) and returns y^x mod
// p padded to the length of p (RFC 7296 section 2.14).
func (e *modpExchange) SharedSecret(peer []byte) ([]byte, error) {
	if len(peer) != e.g.size {
		return nil, fmt.Errorf("%w: %s public value of %d octets, want %d", ErrPublicValue, e.m.Name, len(peer), e.g.size)
	}
	y := new(big.Int).SetBytes(peer)
	if y.Cmp(big.NewInt(1)) <= 0 || y.Cmp(e.g.pMinus1) >= 0 {
		return nil, fmt.Errorf("%w: %s public value outside 2..p-2", ErrPublicValue, e.m.Name)
	}
	s := new(big.Int).Exp(y, e.x, e.g.p)
	return s.FillBytes(make([]byte, e.g.size)), nil
}
