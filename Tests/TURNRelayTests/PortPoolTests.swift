import STUNCodec
import Testing

@testable import TURNRelay

@Suite("PortPool: relay ports, EVEN-PORT and reservations") struct PortPoolTests {
    @Test func everyPortOnceUntilReleased() {
        let pool = PortPool(range: 50_000...50_009)
        var taken = Set<UInt16>()
        for _ in 0..<10 {
            guard let (port, token) = pool.take(.ipv4, even: false, reserveNext: false, now: 0) else {
                Issue.record("pool ran dry early")
                return
            }
            #expect(token == nil)
            #expect((50_000...50_009).contains(port))
            #expect(taken.insert(port).inserted)
        }
        #expect(pool.take(.ipv4, even: false, reserveNext: false, now: 0) == nil)
        #expect(pool.freeCount(.ipv4) == 0)
        // Families are separate.
        #expect(pool.take(.ipv6, even: false, reserveNext: false, now: 0) != nil)
        pool.release(.ipv4, 50_004)
        #expect(pool.freeCount(.ipv4) == 1)
        #expect(pool.take(.ipv4, even: false, reserveNext: false, now: 0)?.0 == 50_004)
    }

    @Test func evenPortAndReservationOfTheNext() throws {
        let pool = PortPool(range: 50_000...50_099)
        for _ in 0..<10 {
            let (port, token) = try #require(pool.take(.ipv4, even: true, reserveNext: true, now: 1_000))
            #expect(port % 2 == 0)
            let t = try #require(token)
            // The reserved port is the next one, redeemable once, for its family.
            let (family, next, socket) = try #require(pool.redeem(t, now: 2_000))
            #expect(family == .ipv4 && next == port + 1 && socket == -1)
            #expect(pool.redeem(t, now: 2_000) == nil)
        }
    }

    @Test func unredeemedReservationsExpireAndFreeTheirPort() throws {
        let pool = PortPool(range: 50_000...50_003)
        let (_, token) = try #require(pool.take(.ipv4, even: true, reserveNext: true, now: 0))
        #expect(pool.freeCount(.ipv4) == 2)
        pool.expireReservations(now: PortPool.reservationMilliseconds - 1)
        #expect(pool.freeCount(.ipv4) == 2)
        pool.expireReservations(now: PortPool.reservationMilliseconds)
        #expect(pool.freeCount(.ipv4) == 3)
        #expect(pool.redeem(try #require(token), now: PortPool.reservationMilliseconds) == nil)
    }

    @Test func cancelledReservationGivesItsPortBack() throws {
        let pool = PortPool(range: 50_000...50_001)
        let (_, token) = try #require(pool.take(.ipv4, even: true, reserveNext: true, now: 0))
        #expect(pool.freeCount(.ipv4) == 0)
        pool.cancel(try #require(token))
        #expect(pool.freeCount(.ipv4) == 1)
    }
}
