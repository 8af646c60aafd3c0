"""Payments, medical cards and prescription claims through the stack deployed to
LocalStack: the claim saga runs in the deployed claim state machine (Step
Functions → claim step Lambdas), every read through the deployed projector."""

import json
import uuid
from concurrent.futures import ThreadPoolExecutor

from conftest import event_types, execution

ITEMS = [
    {"drugCode": "PAN500", "drugName": "Panadol 500mg", "quantity": 2, "unitPrice": 150},
    {"drugCode": "AMOX250", "drugName": "Amoxicillin 250mg", "quantity": 1, "unitPrice": 100},
]


class Scene:
    """An insurer sponsoring a card (coverage %, monthly limit) held by a patient,
    who is also its beneficiary, and a pharmacy."""

    def __init__(self, api, patient_funds, coverage=80, limit=1000):
        tag = uuid.uuid4()
        self.api = api
        self.insurer = api.token(f"insurer-{tag}", "insurer")
        self.patient = api.token(f"patient-{tag}")
        self.pharmacy = api.token(f"pharmacy-{tag}", "pharmacy")
        self.admin = api.token("ops", "admin")
        self.sponsor_wallet = api.wallet(self.insurer, funds=10000)
        self.patient_wallet = api.wallet(self.patient, funds=patient_funds)
        self.pharmacy_wallet = api.wallet(self.pharmacy)
        card = {"holderId": f"patient-{tag}", "sponsorWalletId": self.sponsor_wallet, "planName": "Gold", "coveragePercent": coverage,
                "monthlyLimit": limit, "expiresAt": "2035-01-01T00:00:00Z"}
        self.medcard = api.expect(201, "POST", "/api/v2/commands/medcards", self.insurer, card)["medcardId"]
        api.expect(200, "POST", f"/api/v2/commands/medcards/{self.medcard}/activate", self.insurer)
        self.beneficiary = str(uuid.uuid4())
        api.expect(200, "POST", f"/api/v2/commands/medcards/{self.medcard}/beneficiaries", self.patient,
                   {"beneficiaryId": self.beneficiary, "name": "Self", "relationship": "self"})

    def submit(self, prescription, items=ITEMS):
        body = {"medcardId": self.medcard, "beneficiaryId": self.beneficiary, "prescriptionId": prescription,
                "pharmacyWalletId": self.pharmacy_wallet, "patientWalletId": self.patient_wallet, "items": items}
        return self.api.expect(202, "POST", "/api/v2/commands/claims/prescriptions", self.pharmacy, body)["claimId"]

    def settled(self, claim):
        return self.api.eventually(self.pharmacy, f"/api/v2/claims/{claim}", lambda c: c["status"] != "PENDING", within=60)

    def balance(self, wallet):
        return self.api.expect(200, "GET", f"/api/v2/wallets/{wallet}/balance", self.admin)["balance"]

    def balances(self):
        return tuple(self.balance(w) for w in (self.patient_wallet, self.sponsor_wallet, self.pharmacy_wallet))


def test_a_payment_is_authorised_partly_captured_and_refunded(api):
    payer, merchant = api.token(f"payer-{uuid.uuid4()}"), api.token(f"shop-{uuid.uuid4()}")
    payer_wallet, merchant_wallet = api.wallet(payer, funds=500), api.wallet(merchant)
    body = {"payerWalletId": payer_wallet, "merchantWalletId": merchant_wallet, "amount": 200, "reference": "ORDER-1"}
    payment = api.expect(201, "POST", "/api/v2/commands/payments", payer, body)
    assert payment["status"] == "AUTHORIZED"
    payment_id = payment["paymentId"]
    held = api.eventually(payer, f"/api/v2/wallets/{payer_wallet}", lambda w: w.get("held") == 200)
    assert (held["balance"], held["available"]) == (500, 300)
    assert api.expect(200, "POST", f"/api/v2/commands/payments/{payment_id}/capture", merchant, {"amount": 150})["status"] == "CAPTURED"
    assert api.expect(200, "POST", f"/api/v2/commands/payments/{payment_id}/refund", merchant, {"amount": 50, "reason": "one item back"})["status"] == "PARTIALLY_REFUNDED"
    view = api.eventually(payer, f"/api/v2/payments/{payment_id}", lambda p: p["status"] == "PARTIALLY_REFUNDED")
    assert (view["amount"], view["capturedAmount"], view["refundedAmount"]) == (200, 150, 50)
    payer_view = api.eventually(payer, f"/api/v2/wallets/{payer_wallet}", lambda w: w["balance"] == 400 and w["held"] == 0)
    assert payer_view["available"] == 400
    assert api.eventually(merchant, f"/api/v2/wallets/{merchant_wallet}", lambda w: w["balance"] == 100)


def test_a_claim_is_approved_through_the_claim_state_machine(api, stack):
    scene = Scene(api, patient_funds=500)
    claim = scene.submit(f"RX-{uuid.uuid4()}")
    done = scene.settled(claim)
    assert (done["status"], done["totalAmount"], done["coveredAmount"], done["copaymentAmount"]) == ("APPROVED", 400, 320, 80), done
    run = execution(stack["ClaimStateMachineArn"], claim, within=60)
    assert run["status"] == "SUCCEEDED", run
    assert scene.balances() == (420, 9680, 400)
    assert sum(scene.balances()) == 500 + 10000, "money is conserved"
    spend = api.eventually(scene.patient, f"/api/v2/medcards/{scene.medcard}/spend", lambda s: s["claimCount"] == 1)
    assert (spend["spent"], spend["remaining"]) == (320, 680)
    listed = api.expect(200, "GET", f"/api/v2/pharmacies/{scene.pharmacy_wallet}/claims", scene.pharmacy)
    assert [c["claimId"] for c in listed["items"]] == [claim]


def test_a_patient_who_cannot_pay_the_copayment_gets_a_rejection_and_nothing_moves(api, stack):
    scene = Scene(api, patient_funds=50)
    before = scene.balances()
    claim = scene.submit(f"RX-{uuid.uuid4()}")
    done = scene.settled(claim)
    assert (done["status"], done["rejectionReason"]) == ("REJECTED", "INSUFFICIENT_FUNDS"), done
    assert scene.balances() == before
    spend = api.eventually(scene.patient, f"/api/v2/medcards/{scene.medcard}/spend", lambda s: s["reserved"] == 0)
    assert (spend["spent"], spend["remaining"], spend["claimCount"]) == (0, 1000, 0)
    assert event_types(stack, f"claim#{claim}")[-3:] == ["ClaimStepFailed", "ClaimReservationReleased", "ClaimRejected"]


def test_a_claim_to_a_closed_pharmacy_is_rejected_and_every_compensation_is_in_the_events(api, stack):
    # The saga fails at its last step (crediting the pharmacy) and undoes the
    # sponsor debit, the copayment and the reservation, newest first.
    scene = Scene(api, patient_funds=500)
    api.expect(200, "POST", f"/api/v2/commands/wallets/{scene.pharmacy_wallet}/close", scene.pharmacy, {"reason": "moved"})
    before = scene.balances()
    claim = scene.submit(f"RX-{uuid.uuid4()}")
    done = scene.settled(claim)
    assert (done["status"], done["rejectionReason"]) == ("REJECTED", "WALLET_NOT_ACTIVE"), done
    assert scene.balances() == before
    assert event_types(stack, f"claim#{claim}") == [
        "ClaimSubmitted", "ClaimPriced", "ClaimCoverageReserved", "ClaimCopaymentDebited", "ClaimSponsorDebited",
        "ClaimStepFailed", "ClaimSponsorRefunded", "ClaimCopaymentRefunded", "ClaimReservationReleased", "ClaimRejected",
    ]
    assert execution(stack["ClaimStateMachineArn"], claim, within=60)["status"] == "SUCCEEDED"


def test_a_claim_with_nothing_left_of_the_limit_is_rejected(api, stack):
    scene = Scene(api, patient_funds=500, coverage=100, limit=300)
    first = scene.submit(f"RX-{uuid.uuid4()}", [{"drugCode": "A", "drugName": "A", "quantity": 3, "unitPrice": 100}])
    assert scene.settled(first)["status"] == "APPROVED"
    second = scene.submit(f"RX-{uuid.uuid4()}")
    done = scene.settled(second)
    assert (done["status"], done["rejectionReason"]) == ("REJECTED", "LIMIT_EXCEEDED"), done
    # Refused while pricing: nothing was reserved or paid, so nothing to undo.
    assert event_types(stack, f"claim#{second}") == ["ClaimSubmitted", "ClaimRejected"]


def test_two_concurrent_claims_over_the_limit_approve_exactly_one(api, stack):
    scene = Scene(api, patient_funds=5000, coverage=100, limit=1000)
    # Each claim alone takes the whole limit: whichever reserves first leaves the
    # other nothing, whether it is priced before that reservation or after.
    items = [{"drugCode": "INS100", "drugName": "Insulin", "quantity": 10, "unitPrice": 100}]
    with ThreadPoolExecutor(2) as pool:
        claims = list(pool.map(lambda rx: scene.submit(rx, items), [f"RX-{uuid.uuid4()}", f"RX-{uuid.uuid4()}"]))
    outcomes = [scene.settled(c) for c in claims]
    assert sorted(c["status"] for c in outcomes) == ["APPROVED", "REJECTED"], outcomes
    assert [c["rejectionReason"] for c in outcomes if c["status"] == "REJECTED"] == ["LIMIT_EXCEEDED"]
    assert scene.balances() == (5000, 9000, 1000)
    rejected = next(c["claimId"] for c in outcomes if c["status"] == "REJECTED")
    assert event_types(stack, f"claim#{rejected}") in (["ClaimSubmitted", "ClaimRejected"], ["ClaimSubmitted", "ClaimPriced", "ClaimRejected"])


def test_the_authorization_matrix_holds_through_the_deployed_authorizer_and_functions(api, stack):
    """A representative subset of the matrix `api/tests/authorization_matrix.rs` runs on
    every route: the two holes a hostile caller found, and a stranger (with each role)
    against a debit, a capture and a card command. Every refusal changes no balance."""
    scene = Scene(api, patient_funds=1000)
    tag = uuid.uuid4()
    stranger = api.token(f"stranger-{tag}")
    stranger_wallet = api.wallet(stranger, funds=1000)
    # A pharmacy naming a stranger's wallet for the copayment: 403, nothing filed.
    body = {"medcardId": scene.medcard, "beneficiaryId": scene.beneficiary, "prescriptionId": f"RX-{tag}",
            "pharmacyWalletId": scene.pharmacy_wallet, "patientWalletId": stranger_wallet, "items": ITEMS}
    status, reply, _ = api.call("POST", "/api/v2/commands/claims/prescriptions", scene.pharmacy, body)
    assert (status, reply["error"]) == (403, "FORBIDDEN"), reply
    # A genuine token whose one role name holds a comma is no admin.
    # (`healthpay token` refuses unknown role names, so the odd token is signed here.)
    odd = jwt_with_roles(api, f"odd-{tag}", ["pharmacy,admin"])
    api.eventually(scene.patient, f"/api/v2/wallets/{scene.patient_wallet}", lambda wallet: True)  # reads lag the commands
    status, reply, _ = api.call("GET", f"/api/v2/wallets/{scene.patient_wallet}", odd)
    assert (status, reply["error"]) == (403, "FORBIDDEN"), reply
    status, reply, _ = api.call("POST", f"/api/v2/commands/wallets/{scene.patient_wallet}/suspend", odd, {"reason": "mine"})
    assert (status, reply["error"]) == (403, "FORBIDDEN"), reply

    merchant = api.token(f"shop-{tag}")
    shop_wallet = api.wallet(merchant)
    payment = api.expect(201, "POST", "/api/v2/commands/payments", scene.patient,
                         {"payerWalletId": scene.patient_wallet, "merchantWalletId": shop_wallet, "amount": 10, "reference": "O-1"})["paymentId"]
    api.eventually(scene.patient, f"/api/v2/payments/{payment}", lambda view: True)
    before = (scene.balance(scene.patient_wallet), scene.balance(shop_wallet), scene.balance(stranger_wallet))
    strangers = [stranger, api.token(f"rx-{tag}", "pharmacy"), api.token(f"ins-{tag}", "insurer")]
    for who in strangers + [None]:
        expected = 401 if who is None else 403
        for method, path, body in [
            ("POST", f"/api/v2/commands/wallets/{scene.patient_wallet}/debit", {"amount": 1, "transactionType": "withdrawal", "reference": "x"}),
            ("POST", f"/api/v2/commands/payments/{payment}/capture", {}),
            ("POST", f"/api/v2/commands/medcards/{scene.medcard}/suspend", {"reason": "x"}),
            ("GET", f"/api/v2/payments/{payment}", None),
        ]:
            status, reply, _ = api.call(method, path, who, body)
            assert status == expected, f"{method} {path}: {status} {reply}"
    after = (scene.balance(scene.patient_wallet), scene.balance(shop_wallet), scene.balance(stranger_wallet))
    assert after == before
    card = api.expect(200, "GET", f"/api/v2/medcards/{scene.medcard}", scene.patient)
    assert card["status"] == "ACTIVE"


def jwt_with_roles(api, sub, roles):
    """An HS256 token signed with the stack's secret, with any role names at all."""
    import base64
    import hashlib
    import hmac
    import time as clock

    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    now = int(clock.time())
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64(json.dumps({"sub": sub, "roles": roles, "iss": "healthpay-ledger", "aud": "healthpay-api", "iat": now, "exp": now + 600}).encode())
    signature = hmac.new(api.secret.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
    return f"{header}.{claims}.{b64(signature)}"
