package message

import "fmt"

// NotifyType is the type of a Notify payload (RFC 7296 section 3.10.1, IANA
// "IKEv2 Notify Message Types"). Types below 16384 report errors; the others
// carry status.
type NotifyType uint16

// Error notifications.
const (
	UnsupportedCriticalPayload NotifyType = 1
	InvalidIKESPI              NotifyType = 4
	InvalidMajorVersion        NotifyType = 5
	InvalidSyntax              NotifyType = 7
	InvalidMessageID           NotifyType = 9
	InvalidSPI                 NotifyType = 11
	NoProposalChosen           NotifyType = 14
	InvalidKEPayload           NotifyType = 17
	AuthenticationFailed       NotifyType = 24
	SinglePairRequired         NotifyType = 34
	NoAdditionalSAs            NotifyType = 35
	InternalAddressFailure     NotifyType = 36
	FailedCPRequired           NotifyType = 37
	TSUnacceptable             NotifyType = 38
	InvalidSelectors           NotifyType = 39
	UnacceptableAddresses      NotifyType = 40 // RFC 4555
	UnexpectedNATDetected      NotifyType = 41 // RFC 4555
	UseAssignedHoA             NotifyType = 42 // RFC 5026
	TemporaryFailure           NotifyType = 43 // RFC 7296
	ChildSANotFound            NotifyType = 44 // RFC 7296
	InvalidGroupID             NotifyType = 45 // RFC 9838 (G-IKEv2)
	AuthorizationFailed        NotifyType = 46 // RFC 9838
	StateNotFound              NotifyType = 47 // RFC 9370
)

// Status notifications.
const (
	InitialContact                  NotifyType = 16384
	SetWindowSize                   NotifyType = 16385
	AdditionalTSPossible            NotifyType = 16386
	IPCompSupported                 NotifyType = 16387
	NATDetectionSourceIP            NotifyType = 16388
	NATDetectionDestinationIP       NotifyType = 16389
	Cookie                          NotifyType = 16390
	UseTransportMode                NotifyType = 16391
	HTTPCertLookupSupported         NotifyType = 16392
	RekeySA                         NotifyType = 16393
	ESPTFCPaddingNotSupported       NotifyType = 16394
	NonFirstFragmentsAlso           NotifyType = 16395
	MOBIKESupported                 NotifyType = 16396 // RFC 4555
	AdditionalIP4Address            NotifyType = 16397
	AdditionalIP6Address            NotifyType = 16398
	NoAdditionalAddresses           NotifyType = 16399
	UpdateSAAddresses               NotifyType = 16400
	Cookie2                         NotifyType = 16401
	NoNATsAllowed                   NotifyType = 16402
	AuthLifetime                    NotifyType = 16403 // RFC 4478
	MultipleAuthSupported           NotifyType = 16404 // RFC 4739
	AnotherAuthFollows              NotifyType = 16405
	RedirectSupported               NotifyType = 16406 // RFC 5685
	Redirect                        NotifyType = 16407
	RedirectedFrom                  NotifyType = 16408
	TicketLTOpaque                  NotifyType = 16409 // RFC 5723
	TicketRequest                   NotifyType = 16410
	TicketAck                       NotifyType = 16411
	TicketNack                      NotifyType = 16412
	TicketOpaque                    NotifyType = 16413
	LinkID                          NotifyType = 16414 // RFC 5739
	UseWESPMode                     NotifyType = 16415 // RFC 5840
	ROHCSupported                   NotifyType = 16416 // RFC 5857
	EAPOnlyAuthentication           NotifyType = 16417 // RFC 5998
	ChildlessIKEv2Supported         NotifyType = 16418 // RFC 6023
	QuickCrashDetection             NotifyType = 16419 // RFC 6290
	IKEv2MessageIDSyncSupported     NotifyType = 16420 // RFC 6311
	IPsecReplayCounterSyncSupported NotifyType = 16421
	IKEv2MessageIDSync              NotifyType = 16422
	IPsecReplayCounterSync          NotifyType = 16423
	SecurePasswordMethods           NotifyType = 16424 // RFC 6467
	PSKPersist                      NotifyType = 16425 // RFC 6631
	PSKConfirm                      NotifyType = 16426
	ERXSupported                    NotifyType = 16427 // RFC 6867
	IFOMCapability                  NotifyType = 16428
	SenderRequestID                 NotifyType = 16429
	IKEv2FragmentationSupported     NotifyType = 16430 // RFC 7383
	SignatureHashAlgorithms         NotifyType = 16431 // RFC 7427
	CloneIKESASupported             NotifyType = 16432 // RFC 7791
	CloneIKESA                      NotifyType = 16433
	Puzzle                          NotifyType = 16434 // RFC 8019
	UsePPK                          NotifyType = 16435 // RFC 8784
	PPKIdentity                     NotifyType = 16436
	NoPPKAuth                       NotifyType = 16437
	IntermediateExchangeSupported   NotifyType = 16438 // RFC 9242
	IP4Allowed                      NotifyType = 16439 // RFC 8983
	IP6Allowed                      NotifyType = 16440
	AdditionalKeyExchange           NotifyType = 16441 // RFC 9370
	UseAggfrag                      NotifyType = 16442 // RFC 9347
	firstStatusNotify               NotifyType = 16384
)

var notifyNames = map[NotifyType]string{
	UnsupportedCriticalPayload: "UNSUPPORTED_CRITICAL_PAYLOAD", InvalidIKESPI: "INVALID_IKE_SPI",
	InvalidMajorVersion: "INVALID_MAJOR_VERSION", InvalidSyntax: "INVALID_SYNTAX",
	InvalidMessageID: "INVALID_MESSAGE_ID", InvalidSPI: "INVALID_SPI", NoProposalChosen: "NO_PROPOSAL_CHOSEN",
	InvalidKEPayload: "INVALID_KE_PAYLOAD", AuthenticationFailed: "AUTHENTICATION_FAILED",
	SinglePairRequired: "SINGLE_PAIR_REQUIRED", NoAdditionalSAs: "NO_ADDITIONAL_SAS",
	InternalAddressFailure: "INTERNAL_ADDRESS_FAILURE", FailedCPRequired: "FAILED_CP_REQUIRED",
	TSUnacceptable: "TS_UNACCEPTABLE", InvalidSelectors: "INVALID_SELECTORS",
	UnacceptableAddresses: "UNACCEPTABLE_ADDRESSES", UnexpectedNATDetected: "UNEXPECTED_NAT_DETECTED",
	UseAssignedHoA: "USE_ASSIGNED_HoA", TemporaryFailure: "TEMPORARY_FAILURE",
	ChildSANotFound: "CHILD_SA_NOT_FOUND", InvalidGroupID: "INVALID_GROUP_ID",
	AuthorizationFailed: "AUTHORIZATION_FAILED", StateNotFound: "STATE_NOT_FOUND",

	InitialContact: "INITIAL_CONTACT", SetWindowSize: "SET_WINDOW_SIZE",
	AdditionalTSPossible: "ADDITIONAL_TS_POSSIBLE", IPCompSupported: "IPCOMP_SUPPORTED",
	NATDetectionSourceIP: "NAT_DETECTION_SOURCE_IP", NATDetectionDestinationIP: "NAT_DETECTION_DESTINATION_IP",
	Cookie: "COOKIE", UseTransportMode: "USE_TRANSPORT_MODE", HTTPCertLookupSupported: "HTTP_CERT_LOOKUP_SUPPORTED",
	RekeySA: "REKEY_SA", ESPTFCPaddingNotSupported: "ESP_TFC_PADDING_NOT_SUPPORTED",
	NonFirstFragmentsAlso: "NON_FIRST_FRAGMENTS_ALSO", MOBIKESupported: "MOBIKE_SUPPORTED",
	AdditionalIP4Address: "ADDITIONAL_IP4_ADDRESS", AdditionalIP6Address: "ADDITIONAL_IP6_ADDRESS",
	NoAdditionalAddresses: "NO_ADDITIONAL_ADDRESSES", UpdateSAAddresses: "UPDATE_SA_ADDRESSES",
	Cookie2: "COOKIE2", NoNATsAllowed: "NO_NATS_ALLOWED", AuthLifetime: "AUTH_LIFETIME",
	MultipleAuthSupported: "MULTIPLE_AUTH_SUPPORTED", AnotherAuthFollows: "ANOTHER_AUTH_FOLLOWS",
	RedirectSupported: "REDIRECT_SUPPORTED", Redirect: "REDIRECT", RedirectedFrom: "REDIRECTED_FROM",
	TicketLTOpaque: "TICKET_LT_OPAQUE", TicketRequest: "TICKET_REQUEST", TicketAck: "TICKET_ACK",
	TicketNack: "TICKET_NACK", TicketOpaque: "TICKET_OPAQUE", LinkID: "LINK_ID", UseWESPMode: "USE_WESP_MODE",
	ROHCSupported: "ROHC_SUPPORTED", EAPOnlyAuthentication: "EAP_ONLY_AUTHENTICATION",
	ChildlessIKEv2Supported: "CHILDLESS_IKEV2_SUPPORTED", QuickCrashDetection: "QUICK_CRASH_DETECTION",
	IKEv2MessageIDSyncSupported:     "IKEV2_MESSAGE_ID_SYNC_SUPPORTED",
	IPsecReplayCounterSyncSupported: "IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED",
	IKEv2MessageIDSync:              "IKEV2_MESSAGE_ID_SYNC", IPsecReplayCounterSync: "IPSEC_REPLAY_COUNTER_SYNC",
	SecurePasswordMethods: "SECURE_PASSWORD_METHODS", PSKPersist: "PSK_PERSIST", PSKConfirm: "PSK_CONFIRM",
	ERXSupported: "ERX_SUPPORTED", IFOMCapability: "IFOM_CAPABILITY", SenderRequestID: "SENDER_REQUEST_ID",
	IKEv2FragmentationSupported: "IKEV2_FRAGMENTATION_SUPPORTED", SignatureHashAlgorithms: "SIGNATURE_HASH_ALGORITHMS",
	CloneIKESASupported: "CLONE_IKE_SA_SUPPORTED", CloneIKESA: "CLONE_IKE_SA", Puzzle: "PUZZLE",
	UsePPK: "USE_PPK", PPKIdentity: "PPK_IDENTITY", NoPPKAuth: "NO_PPK_AUTH",
	IntermediateExchangeSupported: "INTERMEDIATE_EXCHANGE_SUPPORTED", IP4Allowed: "IP4_ALLOWED",
	IP6Allowed: "IP6_ALLOWED", AdditionalKeyExchange: "ADDITIONAL_KEY_EXCHANGE", UseAggfrag: "USE_AGGFRAG",
}

// IsError reports whether t reports an error (types 1 to 16383).
func (t NotifyType) IsError() bool { return t > 0 && t < firstStatusNotify }

// String returns the RFC name of the notify type.
func (t NotifyType) String() string {
	if s, ok := notifyNames[t]; ok {
		return s
	}
	if t.IsError() {
		return fmt.Sprintf("ERROR_NOTIFY(%d)", uint16(t))
	}
	return fmt.Sprintf("STATUS_NOTIFY(%d)", uint16(t))
}
