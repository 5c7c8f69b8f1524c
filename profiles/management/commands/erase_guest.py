from django.core.management.base import BaseCommand, CommandError

from profiles.models import Guest
from profiles.selectors import guest_get_by_ref, guests_by_identifier
from profiles.services import guest_erase


class Command(BaseCommand):
    help = (
        "Erase a guest (right to be forgotten): events, sessions and identities go, an audit "
        "row stays, and later events carrying the guest's identifiers are dropped."
    )

    def add_arguments(self, parser):
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--ref", help="the guest's ref")
        target.add_argument("--identifier", help="any identifier value (user id, email, …)")
        parser.add_argument("--kind", help="the identifier's kind (user_id, email, …)")
        parser.add_argument("--workspace", help="workspace name, when --identifier is ambiguous")
        parser.add_argument("--by", default="erase_guest command", help="who asked, for the audit")

    def handle(self, *args, ref, identifier, kind, workspace, by, **options):
        guests = Guest.objects.all()
        if workspace:
            guests = guests.filter(workspace__name=workspace)
        if ref:
            guest = guest_get_by_ref(ref=ref, guests=guests)
            if guest is None:
                raise CommandError(f"no guest with ref {ref}")
        else:
            found = list(guests_by_identifier(value=identifier, kind=kind, guests=guests)[:2])
            if not found:
                raise CommandError(f"no guest with identifier {identifier!r}")
            if len(found) > 1:
                raise CommandError(
                    f"identifier {identifier!r} matches several guests; "
                    "give --kind, --workspace or --ref"
                )
            guest = found[0]
        erasure = guest_erase(guest=guest, erased_by=by)
        self.stdout.write(
            f"erased guest {erasure.guest_ref}: {erasure.events} event(s), "
            f"{erasure.sessions} session(s), {erasure.identities} identifier(s)"
        )
