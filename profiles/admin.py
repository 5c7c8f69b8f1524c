from django.contrib import admin

from .models import Guest, Identity


class IdentityInline(admin.TabularInline):
    model = Identity
    extra = 0
    fields = ["kind", "value", "created_at"]
    readonly_fields = ["created_at"]


@admin.register(Guest)
class GuestAdmin(admin.ModelAdmin):
    list_display = ["ref", "guest_type", "email", "first_name", "last_name", "last_seen"]
    list_filter = ["guest_type"]
    search_fields = ["=ref", "email", "first_name", "last_name", "=identities__value"]
    raw_id_fields = ["merged_into"]
    inlines = [IdentityInline]
    show_full_result_count = False


@admin.register(Identity)
class IdentityAdmin(admin.ModelAdmin):
    list_display = ["kind", "value", "guest"]
    list_filter = ["kind"]
    search_fields = ["=value"]
    raw_id_fields = ["guest"]
    show_full_result_count = False
