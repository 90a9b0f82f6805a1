import STUNCodec
import Testing

@Suite("Message type")
struct MessageTypeTests {
    static let methods: [STUNMethod] = [
        .binding, .allocate, .refresh, .send, .data, .createPermission, .channelBind, .connect, .connectionBind,
        .connectionAttempt,
    ]
    static let classes: [STUNMessageClass] = [.request, .indication, .successResponse, .errorResponse]

    @Test("wire values of RFC 8489, RFC 8656 and RFC 6062")
    func knownWireValues() {
        let table: [(STUNMethod, STUNMessageClass, UInt16)] = [
            (.binding, .request, 0x0001), (.binding, .indication, 0x0011),
            (.binding, .successResponse, 0x0101), (.binding, .errorResponse, 0x0111),
            (.allocate, .request, 0x0003), (.allocate, .successResponse, 0x0103),
            (.allocate, .errorResponse, 0x0113), (.refresh, .request, 0x0004),
            (.refresh, .successResponse, 0x0104), (.send, .indication, 0x0016), (.data, .indication, 0x0017),
            (.createPermission, .request, 0x0008), (.createPermission, .successResponse, 0x0108),
            (.channelBind, .request, 0x0009), (.channelBind, .errorResponse, 0x0119),
            (.connect, .request, 0x000A), (.connectionBind, .request, 0x000B),
            (.connectionAttempt, .indication, 0x001C),
        ]
        for (method, messageClass, wire) in table {
            let type = STUNMessageType(method: method, class: messageClass)
            #expect(type.wireValue == wire, "\(type)")
            #expect(STUNMessageType(wireValue: wire) == type)
        }
    }

    @Test("every named method in every class round-trips", arguments: methods, classes)
    func namedRoundTrip(method: STUNMethod, messageClass: STUNMessageClass) {
        let type = STUNMessageType(method: method, class: messageClass)
        #expect(type.wireValue & 0xC000 == 0)
        #expect(STUNMessageType(wireValue: type.wireValue) == type)
    }

    @Test("all 4096 methods × 4 classes map one-to-one onto the 14-bit type space")
    func allMethodsBijective() {
        var seen = Set<UInt16>()
        for raw in UInt16(0)...0x0FFF {
            for messageClass in Self.classes {
                let type = STUNMessageType(method: STUNMethod(rawValue: raw), class: messageClass)
                let wire = type.wireValue
                #expect(wire & 0xC000 == 0)
                #expect(STUNMessageType(wireValue: wire) == type)
                seen.insert(wire)
            }
        }
        #expect(seen.count == 0x4000)
    }

    @Test("responses derived from a request keep the method")
    func derivedResponses() {
        let request = STUNMessageType(method: .allocate, class: .request)
        #expect(request.successResponse == STUNMessageType(method: .allocate, class: .successResponse))
        #expect(request.errorResponse == STUNMessageType(method: .allocate, class: .errorResponse))
        #expect(STUNMessageType.bindingRequest.successResponse == .bindingSuccess)
    }

    @Test("transaction ID bytes")
    func transactionIDBytes() {
        let bytes: [UInt8] = Array(1...12)
        let id = STUNTransactionID(bytes: bytes)
        #expect(id == STUNTransactionID(high: 0x0102_0304_0506_0708, low: 0x090A_0B0C))
        #expect(id?.bytes == bytes)
        #expect(id?.description == "0102030405060708090a0b0c")
        #expect(STUNTransactionID(bytes: bytes.prefix(11)) == nil)
        #expect(STUNTransactionID.random() != STUNTransactionID.random())
    }

    @Test("comprehension-required range")
    func comprehension() {
        #expect(STUNAttributeType(0x7FFF).isComprehensionRequired)
        #expect(!STUNAttributeType(0x8000).isComprehensionRequired)
        #expect(STUNAttributeType.username.isKnown)
        #expect(!STUNAttributeType(0x7FFF).isKnown)
    }
}
