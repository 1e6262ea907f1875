//go:build amd64 && !purego

#include "textflag.h"

// Byte reversal of each 128-bit lane (VPSHUFB mask): GCM blocks are
// big-endian, the vector code works on them as little-endian integers.
DATA bswapMask<>+0x00(SB)/8, $0x08090a0b0c0d0e0f
DATA bswapMask<>+0x08(SB)/8, $0x0001020304050607
DATA bswapMask<>+0x10(SB)/8, $0x08090a0b0c0d0e0f
DATA bswapMask<>+0x18(SB)/8, $0x0001020304050607
DATA bswapMask<>+0x20(SB)/8, $0x08090a0b0c0d0e0f
DATA bswapMask<>+0x28(SB)/8, $0x0001020304050607
DATA bswapMask<>+0x30(SB)/8, $0x08090a0b0c0d0e0f
DATA bswapMask<>+0x38(SB)/8, $0x0001020304050607
GLOBL bswapMask<>(SB), RODATA|NOPTR, $64

// Counter offsets: lane 0 +0, lane 1 +1 (on the reversed block, whose
// lowest dword is the big-endian 32-bit counter).
DATA ctrLanes<>+0x00(SB)/8, $0
DATA ctrLanes<>+0x08(SB)/8, $0
DATA ctrLanes<>+0x10(SB)/8, $1
DATA ctrLanes<>+0x18(SB)/8, $0
GLOBL ctrLanes<>(SB), RODATA|NOPTR, $32

// +2 on both lanes' counters.
DATA ctrTwo<>+0x00(SB)/8, $2
DATA ctrTwo<>+0x08(SB)/8, $0
DATA ctrTwo<>+0x10(SB)/8, $2
DATA ctrTwo<>+0x18(SB)/8, $0
GLOBL ctrTwo<>(SB), RODATA|NOPTR, $32

// High half of the reflected GCM polynomial, in both qwords.
DATA polyC2<>+0x00(SB)/8, $0xc200000000000000
DATA polyC2<>+0x08(SB)/8, $0xc200000000000000
GLOBL polyC2<>(SB), RODATA|NOPTR, $16

// Bytes GHASH aggregates per reduction: hashBlocks (field.go) blocks.
#define CHUNK 1024

// NONCEBLOCK builds in X GCM's counter block for the nonce (salt S, zero
// above bit 31, and IV V, as Go loads them: little-endian) and the counter
// word C (the big-endian counter in bits 32-63): bytes 0-7 are the salt and
// IV bytes 0-3, bytes 8-15 IV bytes 4-7 and the counter. It clobbers V and
// T, which must differ from C.
#define NONCEBLOCK(S, V, C, T, X) \
	MOVQ    V, T \
	SHLQ    $32, T \
	ORQ     S, T \
	SHRQ    $32, V \
	ORQ     C, V \
	VMOVQ   T, X \
	VPINSRQ $1, V, X, X

#define AESROUND8(K) \
	VAESENC K, Y0, Y0 \
	VAESENC K, Y1, Y1 \
	VAESENC K, Y2, Y2 \
	VAESENC K, Y3, Y3 \
	VAESENC K, Y4, Y4 \
	VAESENC K, Y5, Y5 \
	VAESENC K, Y6, Y6 \
	VAESENC K, Y7, Y7

#define AESLAST8(K) \
	VAESENCLAST K, Y0, Y0 \
	VAESENCLAST K, Y1, Y1 \
	VAESENCLAST K, Y2, Y2 \
	VAESENCLAST K, Y3, Y3 \
	VAESENCLAST K, Y4, Y4 \
	VAESENCLAST K, Y5, Y5 \
	VAESENCLAST K, Y6, Y6 \
	VAESENCLAST K, Y7, Y7

#define XOR8(K) \
	VPXOR K, Y0, Y0 \
	VPXOR K, Y1, Y1 \
	VPXOR K, Y2, Y2 \
	VPXOR K, Y3, Y3 \
	VPXOR K, Y4, Y4 \
	VPXOR K, Y5, Y5 \
	VPXOR K, Y6, Y6 \
	VPXOR K, Y7, Y7

// func ctrXor(rk *[15][32]byte, nr int, salt uint32, iv uint64, ctr uint32, dst, src *byte, n int)
//
// The first counter block is the nonce, salt and iv (its 4 and 8 bytes as
// little-endian integers), and ctr (big-endian), built in registers: a
// load of the nonce from memory just after the caller wrote its two parts
// with two stores would miss store forwarding and stall. n may be any length: the last
// partial block is read and written under a byte mask.
// AX round keys, R9 = nr*32 (offset of the last round key), DI dst, SI
// src, BX bytes left. Y8 holds the next two counters (reversed), Y9 the
// byte-reversal mask, Y10 the +2 step, Y15 a round key.
TEXT ·ctrXor(SB), NOSPLIT, $0-64
	MOVQ rk+0(FP), AX
	MOVQ nr+8(FP), R9
	SHLQ $5, R9
	MOVL salt+16(FP), R11
	MOVQ iv+24(FP), DX
	MOVL ctr+32(FP), R10
	MOVQ dst+40(FP), DI
	MOVQ src+48(FP), SI
	MOVQ n+56(FP), BX

	VMOVDQU     bswapMask<>(SB), Y9
	VMOVDQU     ctrTwo<>(SB), Y10
	BSWAPL      R10
	SHLQ        $32, R10
	NONCEBLOCK(R11, DX, R10, R12, X8)
	VPSHUFB     X9, X8, X8
	VINSERTI128 $1, X8, Y8, Y8
	VPADDD      ctrLanes<>(SB), Y8, Y8

loop16:
	CMPQ BX, $256
	JB   loop2
	VPSHUFB Y9, Y8, Y0
	VPADDD  Y10, Y8, Y8
	VPSHUFB Y9, Y8, Y1
	VPADDD  Y10, Y8, Y8
	VPSHUFB Y9, Y8, Y2
	VPADDD  Y10, Y8, Y8
	VPSHUFB Y9, Y8, Y3
	VPADDD  Y10, Y8, Y8
	VPSHUFB Y9, Y8, Y4
	VPADDD  Y10, Y8, Y8
	VPSHUFB Y9, Y8, Y5
	VPADDD  Y10, Y8, Y8
	VPSHUFB Y9, Y8, Y6
	VPADDD  Y10, Y8, Y8
	VPSHUFB Y9, Y8, Y7
	VPADDD  Y10, Y8, Y8

	VMOVDQU (AX), Y15
	XOR8(Y15)
	MOVQ $32, R8

rounds16:
	VMOVDQU (AX)(R8*1), Y15
	AESROUND8(Y15)
	ADDQ $32, R8
	CMPQ R8, R9
	JB   rounds16
	VMOVDQU (AX)(R9*1), Y15
	AESLAST8(Y15)

	VPXOR   0(SI), Y0, Y0
	VPXOR   32(SI), Y1, Y1
	VPXOR   64(SI), Y2, Y2
	VPXOR   96(SI), Y3, Y3
	VPXOR   128(SI), Y4, Y4
	VPXOR   160(SI), Y5, Y5
	VPXOR   192(SI), Y6, Y6
	VPXOR   224(SI), Y7, Y7
	VMOVDQU Y0, 0(DI)
	VMOVDQU Y1, 32(DI)
	VMOVDQU Y2, 64(DI)
	VMOVDQU Y3, 96(DI)
	VMOVDQU Y4, 128(DI)
	VMOVDQU Y5, 160(DI)
	VMOVDQU Y6, 192(DI)
	VMOVDQU Y7, 224(DI)
	ADDQ    $256, SI
	ADDQ    $256, DI
	SUBQ    $256, BX
	JMP     loop16

loop2:
	TESTQ BX, BX
	JZ    done
	VPSHUFB Y9, Y8, Y0
	VPADDD  Y10, Y8, Y8
	VPXOR   (AX), Y0, Y0
	MOVQ    $32, R8

rounds2:
	VAESENC (AX)(R8*1), Y0, Y0
	ADDQ    $32, R8
	CMPQ    R8, R9
	JB      rounds2
	VAESENCLAST (AX)(R9*1), Y0, Y0
	CMPQ    BX, $32
	JB      last
	VPXOR   (SI), Y0, Y0
	VMOVDQU Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	SUBQ    $32, BX
	JMP     loop2

last:
	// 1 to 31 bytes: lane 0 of Y0 for the first 16, lane 1 for the rest.
	CMPQ    BX, $16
	JB      partial
	VPXOR   (SI), X0, X1
	VMOVDQU X1, (DI)
	ADDQ    $16, SI
	ADDQ    $16, DI
	SUBQ    $16, BX
	VEXTRACTI128 $1, Y0, X0
	TESTQ   BX, BX
	JZ      done

partial:
	// BX (1 to 15) bytes under a byte mask: masked-off bytes are neither
	// read nor written.
	MOVQ  BX, CX
	MOVQ  $1, R11
	SHLQ  CX, R11
	DECQ  R11
	KMOVQ R11, K1
	VMOVDQU8.Z (SI), K1, X1
	VPXOR      X1, X0, X0
	VMOVDQU8   X0, K1, (DI)

done:
	VZEROUPPER
	RET

// Byte masks (1<<n)-1 for n = 0..16: the bytes of a partial block.
DATA partialMasks<>+0x00(SB)/8, $0x0007000300010000
DATA partialMasks<>+0x08(SB)/8, $0x007f003f001f000f
DATA partialMasks<>+0x10(SB)/8, $0x07ff03ff01ff00ff
DATA partialMasks<>+0x18(SB)/8, $0x7fff3fff1fff0fff
DATA partialMasks<>+0x20(SB)/2, $0xffff
GLOBL partialMasks<>(SB), RODATA|NOPTR, $34

// LOADPARTIAL loads N (1 to 16) bytes at P into X4, zero-padded, under a
// byte mask: bytes past them are not touched. It uses R9.
#define LOADPARTIAL(P, N) \
	LEAQ       partialMasks<>(SB), R9 \
	MOVWLZX    (R9)(N*2), R9 \
	KMOVQ      R9, K1 \
	VMOVDQU8.Z (P), K1, X4

// SINGLE multiplies one block at P (plus the accumulator X0, which it
// then clears) by the table entry at R8 and adds the product to Z1-Z3.
#define SINGLE(P) \
	VMOVDQU    (P), X4 \
	SINGLEX4

// SINGLEX4 is SINGLE for a block already in X4 (in memory byte order).
#define SINGLEX4 \
	VPSHUFB    X9, X4, X4 \
	VPXOR      X0, X4, X4 \
	VPXOR      X0, X0, X0 \
	VMOVDQU    (R8), X5 \
	VPCLMULQDQ $0x00, X5, X4, X6 \
	VPXORQ     Z6, Z1, Z1 \
	VPCLMULQDQ $0x11, X5, X4, X7 \
	VPXORQ     Z7, Z3, Z3 \
	VPCLMULQDQ $0x01, X5, X4, X6 \
	VPXORQ     Z6, Z2, Z2 \
	VPCLMULQDQ $0x10, X5, X4, X7 \
	VPXORQ     Z7, Z2, Z2 \
	ADDQ       $16, R8

// func ghashSeg(tab *[hashBlocks][16]byte, acc *[16]byte, pre *byte, npre int, mid *byte, nmid int, post *byte, npost int, aadBits, ctBits uint64, rk *[15][32]byte, nr int, salt uint32, iv uint64, tag *[16]byte)
//
// Folds into *acc one stream of blocks: pre (npre bytes, 0 to 16, as one
// zero-padded block), mid (nmid bytes, a multiple of 16), post (npost bytes,
// 0 to 15, one zero-padded block) and, with tag set, the length block
// (aadBits, ctBits); so ESP's AAD, ciphertext and lengths take one call
// and, up to 64 blocks, one reduction. Partial blocks are loaded under a
// byte mask, straight from the caller's memory. With tag set, it then
// writes the GCM tag: the hash, byte-reversed, XOR E_K(J0) (J0 = the
// nonce, salt and iv as in ctrXor, and counter 1, computed in X14 with the round keys at rk,
// alongside the hash).
//
// Chunks of up to hashBlocks (64) blocks: block i of a k-block chunk is
// multiplied by H^(k-i) (the accumulator added to the chunk's first block),
// four blocks per ZMM register (then two per YMM, one per XMM), the 256-bit
// products summed (LO Z1, MID Z2, HI Z3) and reduced once per chunk.
// VPCLMULQDQ cost about the same per instruction at every width on the AMD
// EPYC (Zen 4 class) it was measured on: the widest registers do the most.
// AX table, DX accumulator, R10/R11 pre, SI/BX mid, R12/R13 post, R14 bytes
// left in all (16 per partial or length block), CX bytes left in the
// chunk, DI mid bytes in the chunk, R8 table entry of the current block,
// R9 scratch. X0 accumulator (upper bits zero), Z9 byte reversal mask, X13
// the reduction constant.
TEXT ·ghashSeg(SB), NOSPLIT, $0-120
	MOVQ tab+0(FP), AX
	MOVQ acc+8(FP), DX
	MOVQ pre+16(FP), R10
	MOVQ npre+24(FP), R11
	MOVQ mid+32(FP), SI
	MOVQ nmid+40(FP), BX
	MOVQ post+48(FP), R12
	MOVQ npost+56(FP), R13
	MOVQ BX, R14
	TESTQ R11, R11
	JZ    noPre
	ADDQ  $16, R14

noPre:
	TESTQ R13, R13
	JZ    noPost
	ADDQ  $16, R14

noPost:
	CMPQ tag+112(FP), $0
	JE   noLens
	ADDQ $16, R14

noLens:

	VMOVDQU   (DX), X0
	VMOVDQU64 bswapMask<>(SB), Z9
	VMOVDQU   polyC2<>(SB), X13

	// The tag mask E_K(J0): an independent chain the CPU runs in the
	// shadow of the multiplications.
	MOVQ  tag+112(FP), R9
	TESTQ R9, R9
	JZ    chunk
	MOVL    salt+96(FP), DI
	MOVQ    iv+104(FP), CX
	MOVQ    $0x0100000000000000, R8 // counter 1
	NONCEBLOCK(DI, CX, R8, R9, X14)
	MOVQ    rk+80(FP), R9
	VPXOR   (R9), X14, X14
	VAESENC 32(R9), X14, X14
	VAESENC 64(R9), X14, X14
	VAESENC 96(R9), X14, X14
	VAESENC 128(R9), X14, X14
	VAESENC 160(R9), X14, X14
	VAESENC 192(R9), X14, X14
	VAESENC 224(R9), X14, X14
	VAESENC 256(R9), X14, X14
	VAESENC 288(R9), X14, X14
	CMPQ    nr+88(FP), $10
	JE      mask10
	VAESENC 320(R9), X14, X14
	VAESENC 352(R9), X14, X14
	CMPQ    nr+88(FP), $12
	JE      mask12
	VAESENC 384(R9), X14, X14
	VAESENC 416(R9), X14, X14
	VAESENCLAST 448(R9), X14, X14
	JMP     chunk

mask10:
	VAESENCLAST 320(R9), X14, X14
	JMP     chunk

mask12:
	VAESENCLAST 384(R9), X14, X14

chunk:
	TESTQ R14, R14
	JZ    ghashDone
	MOVQ  R14, CX
	CMPQ  CX, $CHUNK
	JBE   sized
	MOVQ  $CHUNK, CX

sized:
	SUBQ   CX, R14
	LEAQ   CHUNK(AX), R8
	SUBQ   CX, R8
	VPXORQ Z1, Z1, Z1
	VPXORQ Z2, Z2, Z2
	VPXORQ Z3, Z3, Z3
	TESTQ  R11, R11
	JZ     midStart
	LOADPARTIAL(R10, R11)
	SINGLEX4
	XORQ   R11, R11
	SUBQ   $16, CX

midStart:
	MOVQ BX, DI
	CMPQ DI, CX
	JBE  midSized
	MOVQ CX, DI

midSized:
	SUBQ DI, BX
	SUBQ DI, CX

quads:
	CMPQ       DI, $64
	JB         pairs
	VMOVDQU64  (SI), Z4
	VPSHUFB    Z9, Z4, Z4
	VPXORQ     Z0, Z4, Z4
	VPXOR      X0, X0, X0
	VMOVDQU64  (R8), Z5
	VPCLMULQDQ $0x00, Z5, Z4, Z6
	VPXORQ     Z6, Z1, Z1
	VPCLMULQDQ $0x11, Z5, Z4, Z7
	VPXORQ     Z7, Z3, Z3
	VPCLMULQDQ $0x01, Z5, Z4, Z6
	VPXORQ     Z6, Z2, Z2
	VPCLMULQDQ $0x10, Z5, Z4, Z7
	VPXORQ     Z7, Z2, Z2
	ADDQ       $64, SI
	ADDQ       $64, R8
	SUBQ       $64, DI
	JMP        quads

pairs:
	// VEX-encoded operations below zero the upper halves of Z4-Z7.
	CMPQ       DI, $32
	JB         single
	VMOVDQU    (SI), Y4
	VPSHUFB    Y9, Y4, Y4
	VPXOR      Y0, Y4, Y4
	VPXOR      X0, X0, X0
	VMOVDQU    (R8), Y5
	VPCLMULQDQ $0x00, Y5, Y4, Y6
	VPXORQ     Z6, Z1, Z1
	VPCLMULQDQ $0x11, Y5, Y4, Y7
	VPXORQ     Z7, Z3, Z3
	VPCLMULQDQ $0x01, Y5, Y4, Y6
	VPXORQ     Z6, Z2, Z2
	VPCLMULQDQ $0x10, Y5, Y4, Y7
	VPXORQ     Z7, Z2, Z2
	ADDQ       $32, SI
	ADDQ       $32, R8
	SUBQ       $32, DI

single:
	TESTQ DI, DI
	JZ    post
	SINGLE(SI)
	ADDQ  $16, SI

post:
	// What is left of the chunk: the partial block, if not taken yet,
	// then the length block.
	TESTQ CX, CX
	JZ    reduce
	SUBQ  $16, CX
	TESTQ R13, R13
	JZ    lens
	LOADPARTIAL(R12, R13)
	SINGLEX4
	XORQ  R13, R13
	JMP   post

lens:
	MOVQ    aadBits+64(FP), R9
	BSWAPQ  R9
	VMOVQ   R9, X4
	MOVQ    ctBits+72(FP), R9
	BSWAPQ  R9
	VPINSRQ $1, R9, X4, X4
	SINGLEX4
	JMP     post

reduce:
	// Fold 512 -> 256 -> 128 bits, add in the middle term, then two
	// reduction rounds.
	VEXTRACTI64X4 $1, Z1, Y6
	VPXOR         Y6, Y1, Y1
	VEXTRACTI64X4 $1, Z2, Y6
	VPXOR         Y6, Y2, Y2
	VEXTRACTI64X4 $1, Z3, Y6
	VPXOR         Y6, Y3, Y3
	VEXTRACTI128  $1, Y1, X6
	VPXOR         X6, X1, X1
	VEXTRACTI128  $1, Y2, X6
	VPXOR         X6, X2, X2
	VEXTRACTI128  $1, Y3, X6
	VPXOR         X6, X3, X3
	VPSLLDQ       $8, X2, X6
	VPXOR         X6, X1, X1
	VPSRLDQ       $8, X2, X6
	VPXOR         X6, X3, X3
	VPCLMULQDQ    $0x00, X13, X1, X6
	VPSHUFD       $0x4e, X1, X1
	VPXOR         X6, X1, X1
	VPCLMULQDQ    $0x00, X13, X1, X6
	VPSHUFD       $0x4e, X1, X1
	VPXOR         X6, X1, X1
	VPXOR         X3, X1, X0
	JMP           chunk

ghashDone:
	VMOVDQU X0, (DX)
	MOVQ    tag+112(FP), R9
	TESTQ   R9, R9
	JZ      noTag
	VPSHUFB X9, X0, X0
	VPXOR   X14, X0, X0
	VMOVDQU X0, (R9)

noTag:
	VZEROUPPER
	RET
